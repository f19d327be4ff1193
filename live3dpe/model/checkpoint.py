"""Our checkpoint format: safetensors weights + JSON metadata, self-describing and verifiable.

The metadata (also written as a readable sidecar `<name>.json`) carries the full
`ModelConfig`, so a file rebuilds its own network; the text back-end its text projection reads
(`net.text_prompt.backend`, the one it was trained with; the frozen encoder itself is never
stored); the live3dpe version; the sha256 of the tensor payload; and free-form training info.
Saving is atomic (temp file + os.replace) so a crash never leaves a truncated checkpoint where a
good one was.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .. import __version__
from .config import PRESETS, ModelConfig
from .text_prompt import DEFAULT_TEXT_BACKEND, MINILM_DIM, TextPromptProjection

if TYPE_CHECKING:
    from .network import EditorNet

FORMAT = "live3dpe-checkpoint/1"
META_KEY = "live3dpe"
SUFFIX = ".safetensors"
MAX_CONFIG_INT = 1 << 16  # no size in a sane config comes near this (paper: 1024 widths, 512 pixels)


def tensor_sha256(state: Mapping[str, Tensor]) -> str:
    """sha256 over (name, dtype, shape, raw bytes) of every tensor in sorted-name order.

    Independent of the file layout, so it can sit inside the file's own header.
    """
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass
class CheckpointMeta:
    """Everything needed to rebuild and trust a checkpoint's network."""

    config: ModelConfig
    text_backend: str = DEFAULT_TEXT_BACKEND  # spec for `make_text_backend` = net.text_prompt.backend
    text_dim: int = MINILM_DIM  # width of the back-end's tokens = net.text_prompt.in_dim
    training: dict = field(default_factory=dict)  # free-form: steps, data, losses, source file...
    sha256: str = ""
    live3dpe_version: str = __version__
    format: str = FORMAT

    @property
    def preset(self) -> str:
        return self.config.name

    def to_dict(self) -> dict:
        return {
            "format": self.format,
            "preset": self.preset,
            "config": self.config.to_dict(),
            "text_backend": self.text_backend,
            "text_dim": self.text_dim,
            "live3dpe_version": self.live3dpe_version,
            "sha256": self.sha256,
            "training": self.training,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> CheckpointMeta:
        if d.get("format") != FORMAT:
            raise ValueError(f"unsupported checkpoint format {d.get('format')!r} (this version reads {FORMAT!r})")
        try:
            return cls(
                config=ModelConfig.from_dict(d["config"]),
                text_backend=d["text_backend"],
                text_dim=int(d["text_dim"]),
                training=dict(d.get("training", {})),
                sha256=d["sha256"],
                live3dpe_version=d.get("live3dpe_version", "unknown"),
            )
        except KeyError as err:
            raise ValueError(f"checkpoint metadata lacks {err.args[0]!r}") from None
        except (TypeError, AttributeError) as err:  # fields of the wrong type or unknown render fields
            raise ValueError(f"checkpoint metadata is malformed: {err}") from None


def sidecar_path(path: str | os.PathLike) -> Path:
    """model.safetensors -> model.json."""
    return _checked_path(path).with_suffix(".json")


def _checked_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.suffix != SUFFIX:
        raise ValueError(f"checkpoint path must end in {SUFFIX}, got {path.name!r}")
    return path


def build_net(config: ModelConfig, text_dim: int = MINILM_DIM, text_backend: str = DEFAULT_TEXT_BACKEND) -> EditorNet:
    """An `EditorNet` for `config` whose text projection reads back-end `text_backend`'s
    `text_dim`-wide tokens."""
    from .network import EditorNet

    net = EditorNet(config)
    use_text_backend(net, text_backend, text_dim)
    return net


def use_text_backend(net: EditorNet, name: str, dim: int) -> None:
    """Make `net` read back-end `name`'s `dim`-wide tokens: a fresh text projection unless it
    already reads them (a projection trained on one back-end's features is noise on another's)."""
    old = net.text_prompt
    if (old.backend, old.in_dim) != (name, dim):
        fresh = TextPromptProjection(dim, old.out_dim, num_slots=old.slots.shape[0], backend=name)
        net.text_prompt = fresh.to(old.slots.device)


def _atomic_write(path: Path, write) -> None:
    """Run `write(tmp_path)` then move the result over `path`; on any failure remove the temp file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)  # (some writers recreate the file, so the mode is set afterwards)
        os.chmod(tmp, 0o644)  # mkstemp makes owner-only files; a checkpoint is an ordinary shared file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(
    net: EditorNet,
    path: str | os.PathLike,
    meta: Mapping | None = None,
) -> CheckpointMeta:
    """Write `net` to `path` (.safetensors) plus `<name>.json`; `meta` is free-form training info.
    The text back-end recorded is the one the net's text projection reads (`use_text_backend`).

    Returns the metadata written. Tensors are stored as they are (dtype included), on CPU.
    """
    from safetensors.torch import save_file

    path = _checked_path(path)
    json.dumps(dict(meta or {}))  # fail before writing anything if the info is not JSON
    state: dict[str, Tensor] = {}
    for name, t in net.state_dict().items():
        state[name] = t.detach().to("cpu").contiguous().clone()  # clone: safetensors refuses shared storage
    info = CheckpointMeta(
        config=net.cfg,
        text_backend=net.text_prompt.backend,
        text_dim=net.text_prompt.in_dim,
        training=dict(meta or {}),
        sha256=tensor_sha256(state),
    )
    text = json.dumps(info.to_dict(), indent=2, sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, lambda tmp: save_file(state, tmp, metadata={META_KEY: text}))
    _atomic_write(sidecar_path(path), lambda tmp: Path(tmp).write_text(text + "\n"))
    return info


def read_meta(path: str | os.PathLike) -> CheckpointMeta:
    """The metadata from a checkpoint's header (reads no tensors)."""
    from safetensors import safe_open

    path = _checked_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for damaged headers
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from err
    if META_KEY not in header:
        raise ValueError(
            f"{path} has no live3dpe metadata; convert official weights with `live3dpe weights import`"
        )
    try:
        return CheckpointMeta.from_dict(json.loads(header[META_KEY]))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: metadata is not valid JSON ({err})") from None


def check_state(net: EditorNet, state: Mapping[str, Tensor], what: str) -> None:
    """Raise `CheckpointMismatchError` listing every missing, unexpected or wrongly shaped key."""
    from .importer import CheckpointMismatchError

    ours = net.state_dict()
    missing = [k for k in ours if k not in state]
    unexpected = [k for k in state if k not in ours]
    wrong = {
        k: (tuple(ours[k].shape), tuple(v.shape))
        for k, v in state.items()
        if k in ours and tuple(v.shape) != tuple(ours[k].shape)
    }
    if missing or unexpected or wrong:
        raise CheckpointMismatchError(missing, unexpected, wrong, what)


def _check_sizes(value: object, where: str) -> None:
    """Every number in the config finite, every integer within 0..MAX_CONFIG_INT."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_sizes(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_sizes(v, f"{where}[{i}]")
    elif isinstance(value, bool) or value is None or isinstance(value, str):
        return
    elif isinstance(value, int):
        if not 0 <= value <= MAX_CONFIG_INT:
            raise ValueError(f"checkpoint config {where} = {value} is outside 0..{MAX_CONFIG_INT}")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"checkpoint config {where} = {value} is not finite")
    else:
        raise ValueError(f"checkpoint config {where} has an unexpected {type(value).__name__} value")


def validate_checkpoint(meta: CheckpointMeta, state: Mapping[str, Tensor], what: str) -> None:
    """Check a checkpoint's metadata against sane bounds and against the tensors it holds,
    before any memory is spent on the network it describes.

    The metadata is not trusted: a crafted size (say `ref_dim`) would otherwise make the loader
    allocate a network of many gigabytes before finding that the tensors do not fit. A config
    equal to its named preset has known sizes; any other is built on the meta device (shapes
    only, no memory; ~3 s the first time, for torch's meta kernels) and every key and shape
    compared with the file's, so the real network is then exactly as large as the file."""
    _check_sizes(meta.config.to_dict(), "config")
    if not 1 <= meta.text_dim <= MAX_CONFIG_INT:
        raise ValueError(f"{what}: text_dim {meta.text_dim} is outside 1..{MAX_CONFIG_INT}")
    if PRESETS.get(meta.config.name) == meta.config:
        return  # sizes are the preset's; `load_state_dict(strict=True)` checks every tensor
    try:
        with torch.device("meta"):
            shapes = build_net(meta.config, meta.text_dim)
    except (ValueError, TypeError, RuntimeError, AssertionError, ZeroDivisionError) as err:
        raise ValueError(f"{what}: its config does not describe a buildable network ({type(err).__name__}: {err})") from None
    check_state(shapes, state, what)


def load_checkpoint(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> tuple[EditorNet, CheckpointMeta]:
    """Rebuild the network a checkpoint describes and load it, verifying the sha256 and every key.

    Returns (net in eval mode on `device`, cast to `dtype` if given, metadata).
    """
    from safetensors.torch import load_file

    meta = read_meta(path)
    state = load_file(str(path), device="cpu")
    digest = tensor_sha256(state)
    if digest != meta.sha256:
        raise ValueError(f"{path}: tensor checksum mismatch (file says {meta.sha256[:12]}..., data is {digest[:12]}...); the file is corrupt or was modified")
    what = f"checkpoint {path} (preset {meta.preset!r})"
    validate_checkpoint(meta, state, what)
    net = build_net(meta.config, meta.text_dim, meta.text_backend)
    check_state(net, state, what)
    net.load_state_dict(state, strict=True)
    net.to(device=device, dtype=dtype).eval()
    return net, meta
