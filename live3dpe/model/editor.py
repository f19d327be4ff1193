"""`Editor`: the inference API every other part of live3dpe codes against.

Wraps an `EditorNet` with what a live filter needs and training does not: loading by name,
strict input validation (no silent resizing), prompt caching, eval + inference mode, and
deterministic ray sampling by default so a still face does not flicker.

    editor = Editor.load("default")
    x = editor.preprocess(aligned_uint8)                  # [B, 3, C, C] in [-1, 1], C = crop_resolution
    planes = editor.encode(x, editor.encode_prompt(text="a smiling elf"), camera)   # Eq. 2-3
    out = editor.render(planes, Camera.from_yaw_pitch(0.5, 0.0))

On the appearance route (`small`, the bundled default) the crop is taken at the guide resolution,
the prompt becomes a colour-transform field over it, and rendering re-projects it (guide.py); the
`camera` that saw the crop is then needed to line the input up with the 3D head.
    frames = editor.postprocess(out.image)                # uint8 [B, S, S, 3]
"""
from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .cameras import Camera
from .checkpoint import CheckpointMeta, build_net, load_checkpoint
from .config import PRESETS, ModelConfig, get_preset
from .guide import input_view_image
from .layers import check_image_batch
from .network import to_input_resolution
from .prompts import PromptCache, PromptEncoder
from .text_prompt import DEFAULT_TEXT_BACKEND, TextBackend, make_text_backend
from .types import Features, Guide, Planes, PromptBatch, PromptEmbedding, RenderOutput

if TYPE_CHECKING:
    from .network import EditorNet


log = logging.getLogger(__name__)

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "default_small.safetensors"
DEFAULT_PRESET = "small"
RANDOM_INIT_SEED = 0


def _check_dtype(dtype: torch.dtype) -> None:
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"dtype must be torch.float32, float16 or bfloat16, got {dtype}")


class Editor:
    """Inference-only 3DPE editor on one device and dtype. Build it with `Editor.load`."""

    def __init__(
        self,
        net: EditorNet,
        *,
        weights_version: str,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        text_backend: TextBackend | None = None,
        meta: CheckpointMeta | None = None,
    ) -> None:
        _check_dtype(dtype)
        self.device = torch.device(device)
        self.dtype = dtype
        # channels-last lets cuDNN pick its fast NHWC convolution kernels; on CPU it only costs copies.
        self.memory_format = torch.channels_last if self.device.type == "cuda" else torch.contiguous_format
        # Weights stay float32; a lower `dtype` runs under autocast, which keeps the precision-
        # sensitive parts (ray marching, softmax, norms) in float32 while convs/matmuls use `dtype`.
        self.net = net.to(device=self.device, dtype=torch.float32, memory_format=self.memory_format)
        self.net.eval().requires_grad_(False)
        # The SR's style is a learned constant: fold it into plain conv weights once (exact in fp32).
        self.net.renderer.fold_superres()
        self.config: ModelConfig = net.cfg
        self.meta = meta
        self.prompts = PromptEncoder(self.net, text_backend, weights_version, PromptCache())

    # ----------------------------------------------------------------------------- loading
    @classmethod
    def load(
        cls,
        source: str | os.PathLike = "default",
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        *,
        text_backend: str | TextBackend | None = None,
    ) -> Editor:
        """An editor from "default" (the bundled trained `small` weights), a preset name (random
        weights, with a warning) or one of our `.safetensors` checkpoints.

        text_backend: a back-end or spec ("minilm", "clip:<dir>"); default: the one the
        checkpoint was trained with.
        """
        _check_dtype(dtype)
        source_str = os.fspath(source)
        if source_str == "default":
            if DEFAULT_WEIGHTS.is_file():
                return cls._from_checkpoint(DEFAULT_WEIGHTS, device, dtype, text_backend)
            message = (
                f"no trained default weights at {DEFAULT_WEIGHTS}: using RANDOMLY INITIALISED {DEFAULT_PRESET!r} weights, "
                "the output will be noise. Train some (live3dpe train) or import the official ones "
                "(live3dpe weights import) and pass the .safetensors path."
            )
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            log.warning(message)
            return cls._random(DEFAULT_PRESET, device, dtype, text_backend)
        if source_str in PRESETS:
            message = f"preset {source_str!r} has RANDOM weights: for shapes, timing and tests only"
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            log.warning(message)
            return cls._random(source_str, device, dtype, text_backend)
        path = Path(source_str)
        if path.suffix == ".safetensors":
            return cls._from_checkpoint(path, device, dtype, text_backend)
        if path.suffix in (".pt", ".pth", ".pkl"):
            raise ValueError(
                f"{path} is not a live3dpe checkpoint; convert it first: live3dpe weights import {path} OUT.safetensors"
            )
        raise ValueError(
            f"cannot load {source_str!r}: expected 'default', a preset ({', '.join(sorted(PRESETS))}) "
            "or a .safetensors checkpoint path"
        )

    @classmethod
    def _random(cls, preset: str, device, dtype, text_backend) -> Editor:
        """Reproducible random weights (fixed seed, global RNG untouched)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            net = build_net(get_preset(preset))
        backend = cls._backend(text_backend, DEFAULT_TEXT_BACKEND, device, explicit=text_backend is not None)
        return cls(net, weights_version=f"random-{preset}-seed{RANDOM_INIT_SEED}", device=device, dtype=dtype, text_backend=backend)

    @classmethod
    def _from_checkpoint(cls, path: Path, device, dtype, text_backend) -> Editor:
        net, meta = load_checkpoint(path)
        backend = cls._backend(text_backend, meta.text_backend, device, explicit=text_backend is not None)
        log.info("loaded %s (preset %s, sha256 %s...)", path, meta.preset, meta.sha256[:12])
        return cls(net, weights_version=meta.sha256, device=device, dtype=dtype, text_backend=backend, meta=meta)

    @staticmethod
    def _backend(given: str | TextBackend | None, recorded: str, device, explicit: bool) -> TextBackend | None:
        """The text back-end: as given, else the recorded one. A recorded back-end that is not
        available here (e.g. a CLIP dir from another machine) only disables text prompts."""
        if given is not None and not isinstance(given, str):
            if not isinstance(given, TextBackend):
                raise TypeError(f"text_backend must be a spec string or a TextBackend, got {type(given).__name__}")
            return given
        spec = given or recorded
        try:
            return make_text_backend(spec, device)
        except (FileNotFoundError, RuntimeError, OSError) as err:
            if explicit:
                raise
            log.warning("text back-end %r unavailable (%s): text prompts disabled, image prompts still work", spec, err)
            return None

    @contextlib.contextmanager
    def _inference(self):
        """inference_mode, plus autocast to `dtype` when it is below float32."""
        lower = self.dtype != torch.float32
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.dtype, enabled=lower):
            yield

    def compile(self, threads: int | None = None, batched: bool = False) -> Editor:
        """Compile the prompt-independent encoders (E_low, E_high, E_t) and the renderer with
        `torch.compile` for this model's fixed shapes, then warm them up; returns self.

        Pays a one-off compile (about two minutes on a 2-core CPU, ~10 s once inductor's cache
        has it) for a 1.5-2x faster model on a CPU. The prompt cross-attention stays eager so prompts of
        any token count never trigger a recompile. threads: the torch CPU threads of the threads
        that will call the editor (inductor bakes the count into its kernels and the compiled
        graphs are guarded on it, so another count recompiles); default: the current count.
        batched: also compile for batches of several streams' frames: the batch dimension becomes
        dynamic (torch's automatic dynamic shapes, warmed at batch 1 and then 2), so every batch
        from 2 to 15 whose rays fit one rendering pass shares one more graph per module; batch 1
        keeps its static one. About twice the compile time. On a 2-core CPU the compiled renderer
        gains nothing from a batch and the eager editor batches better (benchmarks/batching.py).
        """
        encoder = self.net.encoder
        modules = (encoder.elow, encoder.ehigh, encoder.fusion, self.net.renderer)
        # CPU: the C++ wrapper runs each compiled graph without the GIL, so the encode and render
        # stages' graphs run in parallel (the Python wrapper serialises them: 2.5x slower encode
        # next to a render, measured)
        options = None
        if self.device.type == "cpu":
            threads = threads or torch.get_num_threads()
            options = {"cpp.threads": threads, "cpp_wrapper": True}
        for module in modules:
            module.compile(dynamic=None if batched else False, options=options)
        previous = torch.get_num_threads()
        if options:  # compiled graphs are guarded on the thread count: warm up with the callers' one
            torch.set_num_threads(threads)
        try:
            for batch in (1, 2) if batched else (1,):  # in this order: the second size makes the batch dynamic
                self._warm_up(batch)
        except Exception as err:  # e.g. no C++ compiler for inductor's CPU kernels
            for module in modules:
                module._compiled_call_impl = None
            log.warning("torch.compile unavailable here (%s: %s); running eagerly", type(err).__name__, str(err).splitlines()[0][:200])
        finally:
            torch.set_num_threads(previous)
        return self

    def _warm_up(self, batch: int) -> None:
        """Encode, fuse and render a batch the way a live stream does (one camera per crop)."""
        r = self.crop_resolution
        crop = np.full((batch, r, r, 3), 128, np.uint8)
        tokens = torch.zeros(1, 2, self.config.ref_dim, device=self.device)
        cameras = [Camera.frontal()] * batch
        planes = self.encode(self.preprocess(crop), PromptEmbedding(tokens, "text", "warm-up"), cameras)
        self.render(planes, cameras)

    # ----------------------------------------------------------------------------- properties
    @property
    def input_resolution(self) -> int:
        return self.config.input_resolution

    @property
    def crop_resolution(self) -> int:
        """The default size of the aligned crop to hand to `preprocess` (the guide's on the appearance route)."""
        return self.config.guide_resolution or self.config.input_resolution

    def crop_resolution_for(self, preferred: int) -> int:
        """The crop size to take when `preferred` pixels are wanted (e.g. 512 for a still): on the
        appearance route any size from input_resolution up works and the output keeps its detail;
        otherwise the encoders' input_resolution."""
        return max(preferred, self.input_resolution) if self.config.appearance_route else self.input_resolution

    def _check_crop_size(self, size: tuple[int, int]) -> None:
        r = self.input_resolution
        ok = size[0] == size[1] >= r if self.config.appearance_route else size == (r, r)
        if not ok:
            want = f"square, at least {r}x{r}" if self.config.appearance_route else f"{r}x{r}"
            raise ValueError(f"image must be {want} (the aligned crop; no implicit resizing), got {size[0]}x{size[1]}")

    @property
    def output_resolution(self) -> int:
        """Side of rendered images: the guide's size on the appearance route, else the SR output."""
        return self.config.guide_resolution or self.config.render.output_resolution

    @property
    def weights_version(self) -> str:
        """Identifies the weights (checkpoint sha256); part of every prompt cache key."""
        return self.prompts.weights_version

    @weights_version.setter
    def weights_version(self, version: str) -> None:
        """Set after changing `net`'s weights in place, so no stale prompt embedding is served."""
        self.prompts.weights_version = version

    @property
    def text_backend(self) -> TextBackend | None:
        return self.prompts.text_backend

    def __repr__(self) -> str:
        return f"Editor(preset={self.config.name!r}, device={self.device}, dtype={self.dtype}, weights={self.weights_version[:16]})"

    # ----------------------------------------------------------------------------- pipeline
    def encode_prompt(self, text: str | None = None, image: np.ndarray | None = None) -> PromptEmbedding:
        """Text or one uint8 RGB reference image -> prompt tokens [1, N, ref_dim] (cached)."""
        return self.prompts(text=text, image=image)

    def preprocess(self, image: np.ndarray) -> Tensor:
        """uint8 RGB [H, W, 3] or [B, H, W, 3] at crop_resolution -> [B, 3, C, C] in [-1, 1].

        The image must already be the aligned crop: a wrong size is an error, never resized.
        """
        if not isinstance(image, np.ndarray):
            raise TypeError(f"image must be a numpy uint8 array, got {type(image).__name__}")
        if image.dtype != np.uint8:
            raise TypeError(f"image must be uint8 RGB, got {image.dtype}")
        a = image[None] if image.ndim == 3 else image
        if a.ndim != 4 or a.shape[-1] != 3:
            raise ValueError(f"image must be [H, W, 3] or [B, H, W, 3] RGB, got shape {image.shape}")
        self._check_crop_size(a.shape[1:3])
        x = torch.from_numpy(np.ascontiguousarray(a)).to(self.device).permute(0, 3, 1, 2)
        x = x.to(self.dtype) / 127.5 - 1.0
        return x.contiguous(memory_format=self.memory_format)

    def encode_features(self, image: Tensor, camera: Camera | Tensor | None = None, geometry: bool = True) -> Features:
        """Image [B, 3, C, C] in [-1, 1] -> E_low/F and E_high features (no prompt needed).

        camera: the camera that saw the crop ([B or 1, 25], a Camera, or one per crop as a list;
        default frontal), kept with the full-resolution crop as the `Guide` on the appearance
        route; unused otherwise.
        geometry=False (appearance route only): skip the encoders; the planes then show only the
        input camera (`render_image`), which is all paste mode needs, at a fraction of the cost."""
        if not isinstance(image, Tensor) or image.ndim != 4:
            raise ValueError(f"image must be a [B, 3, H, W] tensor, got {getattr(image, 'shape', type(image).__name__)}")
        self._check_crop_size(tuple(image.shape[-2:]))
        check_image_batch(image, "image", (3,), image.shape[-1])
        image = image.to(device=self.device, dtype=self.dtype).contiguous(memory_format=self.memory_format)
        guide = None
        if self.config.appearance_route:
            label = self._labels(Camera.frontal() if camera is None else camera)
            if label.shape[0] not in (1, image.shape[0]):
                raise ValueError(f"{label.shape[0]} cameras for {image.shape[0]} images")
            guide = Guide(image, label.expand(image.shape[0], -1))
            if not geometry:
                return Features(None, None, guide)
        elif not geometry:
            raise ValueError(f"preset {self.config.name!r} has no appearance route: its image always needs the geometry")
        with self._inference():
            out = self.net.encoder.encode_features(to_input_resolution(image, self.input_resolution))
        return Features(out["high_feature"], out["f_feature"], guide)

    def stack_prompts(self, prompts: Sequence[PromptEmbedding | None]) -> PromptBatch | None:
        """One prompt (or None = no edit) per sample -> one `PromptBatch` padded to the longest
        prompt, for `fuse` on a batch gathered from several streams; None when no sample has one."""
        if not isinstance(prompts, Sequence) or not prompts:
            raise ValueError("give a non-empty list of prompts (PromptEmbedding or None), one per sample")
        d = self.config.ref_dim
        for p in prompts:
            if p is not None and not isinstance(p, PromptEmbedding):
                raise TypeError(f"each prompt must be a PromptEmbedding or None, got {type(p).__name__}")
            if p is not None and (p.tokens.ndim != 3 or p.tokens.shape[0] != 1 or p.tokens.shape[-1] != d):
                raise ValueError(f"each prompt's tokens must be [1, N, {d}], got {tuple(p.tokens.shape)}")
        given = [p for p in prompts if p is not None]
        if not given:
            return None
        n = max(p.tokens.shape[1] for p in given)
        colour_dim = next((p.colour.shape[-1] for p in given if p.colour is not None), None)
        rows, masks, colours = [], [], []
        with torch.inference_mode():
            for p in prompts:
                k = 0 if p is None else p.tokens.shape[1]
                tokens = torch.zeros(n, d) if p is None else F.pad(p.tokens[0].float(), (0, 0, 0, n - k))
                rows.append(tokens)
                masks.append(torch.arange(n) < k)
                if colour_dim is not None:
                    colours.append(torch.zeros(colour_dim) if p is None or p.colour is None else p.colour[0].float().cpu())
            tokens = torch.stack([t.to(self.device) for t in rows]).to(self.dtype)
            colour = None if colour_dim is None else torch.stack(colours).to(device=self.device, dtype=self.dtype)
            mask = torch.stack(masks).to(self.device)
        return PromptBatch(tokens, mask, colour, tuple(None if p is None else p.key for p in prompts))

    def fuse(self, features: Features, prompt: PromptEmbedding | PromptBatch | Sequence[PromptEmbedding | None] | None = None) -> Planes:
        """Features (+ prompt) -> triplane: the prompt's cross-attention (Eq. 2) and E_t (Eq. 3).
        No prompt = the 3D prior (Live3D). On the appearance route the triplane is the prior's and
        the prompt becomes the guide's colour-transform field.

        A batch of features (e.g. `Features.cat` of several streams') takes one prompt for all or
        one per sample: a list (None = no edit) or a `PromptBatch` (`stack_prompts`); each sample
        then comes out as fused alone with its own prompt (the token mask hides the padding)."""
        if not isinstance(features, Features):
            raise TypeError(f"features must be Features (from encode_features), got {type(features).__name__}")
        batch = features.batch
        if isinstance(prompt, (list, tuple)):
            if len(prompt) != batch:
                raise ValueError(f"{len(prompt)} prompts for a batch of {batch}")
            prompt = self.stack_prompts(prompt)
        tokens = colour = mask = None
        if isinstance(prompt, PromptBatch):
            if len(prompt) != batch or prompt.tokens.shape[-1] != self.config.ref_dim:
                raise ValueError(f"prompt batch must be [{batch}, N, {self.config.ref_dim}], got {tuple(prompt.tokens.shape)}")
            tokens, mask = prompt.tokens.to(device=self.device, dtype=self.dtype), prompt.mask.to(self.device)
            colour = prompt.colour
        elif prompt is not None:
            if not isinstance(prompt, PromptEmbedding):
                raise TypeError(f"prompt must be a PromptEmbedding (see encode_prompt), a list of them or None, got {type(prompt).__name__}")
            tokens = prompt.tokens
            if tokens.ndim != 3 or tokens.shape[-1] != self.config.ref_dim or tokens.shape[0] not in (1, batch):
                raise ValueError(f"prompt tokens must be [1 or {batch}, N, {self.config.ref_dim}], got {tuple(tokens.shape)}")
            tokens = tokens.to(device=self.device, dtype=self.dtype)
            colour = prompt.colour
        feats = None if features.high is None else {"high_feature": features.high, "f_feature": features.f}
        guide = features.guide
        if self.config.appearance_route and guide is None:
            raise ValueError("these features carry no guide image: make them with this editor's encode_features")
        colour = None if colour is None else colour.to(device=self.device, dtype=self.dtype)
        with self._inference():
            if guide is None:
                return Planes(self.net.planes(feats, None, None, tokens, mask=mask)[0])
            return Planes(*self.net.planes(feats, guide.image, guide.label, tokens, colour, mask))

    def encode(self, image: Tensor, prompt: PromptEmbedding | None = None, camera: Camera | Tensor | None = None) -> Planes:
        """Image [B, 3, C, C] in [-1, 1] (+ prompt) -> triplane: `fuse(encode_features(image, camera), prompt)`."""
        return self.fuse(self.encode_features(image, camera), prompt)

    @staticmethod
    def _labels(camera: Camera | Tensor | Sequence[Camera | Tensor]) -> Tensor:
        """A Camera or [B, 25] / [25] label, or a list of them (one per sample) -> finite float32 [B, 25]."""
        if isinstance(camera, (list, tuple)):
            if not camera:
                raise ValueError("empty list of cameras")
            return torch.cat([Editor._labels(c) for c in camera])
        label = camera.label if isinstance(camera, Camera) else camera
        if not isinstance(label, Tensor):
            raise TypeError(f"camera must be a Camera or a [B, 25] tensor, got {type(camera).__name__}")
        if label.ndim == 1:
            label = label[None]
        if label.ndim != 2 or label.shape[1] != 25:
            raise ValueError(f"camera label must be [B, 25] or [25], got {tuple(label.shape)}")
        if not bool(torch.isfinite(label).all()):
            raise ValueError("camera label contains NaN or Inf")
        return label.float()

    def render(self, planes: Planes, camera: Camera | Tensor, deterministic: bool = True) -> RenderOutput:
        """Render planes from camera(s) [B, 25] (or one [25]). One plane set with K cameras renders
        K views; B plane sets with one camera render all from it."""
        if not isinstance(planes, Planes):
            raise TypeError(f"planes must be Planes (from encode), got {type(planes).__name__}")
        if planes.tensor is None:
            raise ValueError("these planes have no geometry (encode_features(geometry=False)): only render_image at the input camera shows them")
        label = self._labels(camera).to(self.device)
        p, guide = planes.tensor.to(self.device), planes.guide
        if p.shape[0] != label.shape[0]:
            if p.shape[0] == 1:
                p = p.expand(label.shape[0], -1, -1, -1)
                if guide is not None:
                    guide = guide.expand(label.shape[0])
            elif label.shape[0] == 1:
                label = label.expand(p.shape[0], -1)
            else:
                raise ValueError(f"batch mismatch: {p.shape[0]} plane sets but {label.shape[0]} cameras")
        with self._inference():
            # an inference-mode copy whatever the caller made: compiled graphs then never see
            # another kind of tensor (a recompile); 25 floats per camera
            return self.net.renderer(p, label.clone(), deterministic=deterministic, guide=guide)

    def render_image(self, planes: Planes, camera: Camera | Tensor | Sequence[Camera | Tensor]) -> Tensor:
        """Only the image of `render` (deterministic), for front ends that show nothing else. At the
        input camera of the appearance route that is the edited input itself (guide.input_view_image),
        so the volume rendering and super-resolution are skipped: paste mode's common case.

        B plane sets with B cameras (e.g. `Planes.cat` of several streams') may mix the two: the
        samples at their own input camera are pasted, the others volume-rendered (they need geometry)."""
        guide = planes.guide if isinstance(planes, Planes) else None
        if guide is None:
            return self.render(planes, camera, deterministic=True).image
        label = self._labels(camera).to(self.device)
        at_input = (label == guide.label.to(self.device)).all(1) if label.shape == guide.label.shape else label.new_zeros(1, dtype=torch.bool)
        if bool(at_input.all()):
            with self._inference():
                return input_view_image(guide)
        if not bool(at_input.any()):
            return self.render(planes, label, deterministic=True).image
        pasted, rendered = at_input.nonzero()[:, 0], (~at_input).nonzero()[:, 0]
        with self._inference():
            image = input_view_image(self._take(planes, pasted).guide)
        image = torch.cat([image, self.render(self._take(planes, rendered), label[rendered], deterministic=True).image])
        return image[torch.cat([pasted, rendered]).argsort()]

    @staticmethod
    def _take(planes: Planes, index: Tensor) -> Planes:
        """The samples `index` of a batch of planes (and its guide), as inference tensors like
        the rest (a compiled renderer is guarded on the kind of tensor)."""
        with torch.inference_mode():
            guide = planes.guide
            if guide is not None:
                guide = Guide(*(None if t is None else t[index.to(t.device)] for t in (guide.image, guide.label, guide.edit)))
            return Planes(None if planes.tensor is None else planes.tensor[index.to(planes.tensor.device)], guide)

    @staticmethod
    def postprocess(image: Tensor) -> np.ndarray:
        """[B, 3, S, S] in [-1, 1] -> uint8 [B, S, S, 3], quantised as EG3D does (x * 127.5 + 128, clamped)."""
        if not isinstance(image, Tensor) or image.ndim != 4 or image.shape[1] != 3:
            shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
            raise ValueError(f"image must be a [B, 3, S, S] tensor, got {shape}")
        with torch.inference_mode():
            out = (image.detach().float().permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
        return out.cpu().numpy()

    def edit(
        self,
        image: np.ndarray,
        prompt: str | np.ndarray | PromptEmbedding | None = None,
        cameras: Camera | Tensor | None = None,
    ) -> np.ndarray:
        """One call: aligned uint8 crop(s) + prompt (text, reference image, embedding or None)
        -> edited uint8 [B, S, S, 3], frontal unless `cameras` are given."""
        x = self.preprocess(image)
        if isinstance(prompt, str):
            prompt = self.encode_prompt(text=prompt)
        elif isinstance(prompt, np.ndarray):
            prompt = self.encode_prompt(image=prompt)
        planes = self.encode(x, prompt, Camera.frontal(x.shape[0]))
        return self.postprocess(self.render(planes, cameras if cameras is not None else Camera.frontal(x.shape[0])).image)
