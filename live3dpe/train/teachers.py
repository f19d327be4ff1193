"""Teachers behind the `Teacher2D` / `Prior3D` interfaces.

`SynthWorld`: the synthetic world as both teachers, with ground truth. It remembers every
image it rendered (by pixel digest), so given such an image it knows the person and camera
behind it: `edit` re-renders the person in the style an instruction names (a perfect 2D
editor), `views` renders the person at other cameras (a perfect 3D prior).

`InstructPix2PixTeacher` / `BlipCaptioner`: the paper's real teachers, loaded from local
diffusers / transformers folders only (never the hub). `ReferenceTeacher` turns an image
prompt into an instruction through the captioner, as 3DPE does for reference images.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from live3dpe.synth.person import Person
from live3dpe.synth.render import render
from live3dpe.synth.styles import STYLES

from .protocols import MultiView

log = logging.getLogger(__name__)


def to_uint8(image: Tensor) -> np.ndarray:
    """[-1, 1] float [B, 3, H, W] -> uint8 [B, H, W, 3]."""
    return ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def from_uint8(rgb: np.ndarray) -> Tensor:
    """uint8 [B, H, W, 3] -> [-1, 1] float [B, 3, H, W]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2).float() / 127.5 - 1


def style_for_instruction(instruction: str) -> str:
    """The style an instruction names: a style name or any of its training / held-out phrasings."""
    text = instruction.strip().lower()
    for name, style in STYLES.items():
        if text == name.lower() or text in (p.lower() for p in (*style.train_phrases, *style.heldout_phrases)):
            return name
    raise ValueError(f"the synthetic world knows no style for instruction {instruction!r}")


class SynthWorld:
    """`Teacher2D` and `Prior3D` with ground truth, for images this world rendered."""

    def __init__(self, resolution: int = 128):
        self.resolution = resolution
        self._known: dict[str, tuple[Person, np.ndarray]] = {}

    @staticmethod
    def _digest(rgb: np.ndarray) -> str:
        return hashlib.sha1(np.ascontiguousarray(rgb).tobytes()).hexdigest()

    def photograph(self, person: Person, label: Tensor) -> Tensor:
        """Render `person` at camera label [25] -> [1, 3, S, S], remembering who it shows."""
        lab = np.asarray(label, np.float32).reshape(25)
        rgb = render(person, lab, self.resolution, supersample=1).image
        self._known[self._digest(rgb)] = (person, lab)
        return from_uint8(rgb[None])

    def _who(self, image: Tensor) -> list[tuple[Person, np.ndarray]]:
        out = []
        for rgb in to_uint8(image):
            key = self._digest(rgb)
            if key not in self._known:
                raise KeyError("SynthWorld can only answer for images it rendered itself (use photograph)")
            out.append(self._known[key])
        return out

    def edit(self, image: Tensor, instruction: str) -> Tensor:
        """The ground-truth edit at the same camera (the perfect 2D editor)."""
        style = STYLES[style_for_instruction(instruction)]
        return from_uint8(np.stack([render(style.apply(p), lab, self.resolution, supersample=1).image for p, lab in self._who(image)]))

    def views(self, image: Tensor, label: Tensor, novel: Tensor) -> MultiView:
        """Ground-truth renders and depths at the input camera and `novel` [B, V, 25]."""
        images, depths = [], []
        for (person, _), lab, nov in zip(self._who(image), label, novel):
            rs = [render(person, c.numpy(), self.resolution, supersample=1) for c in torch.cat([lab[None], nov])]
            images.append(from_uint8(np.stack([r.image for r in rs])))
            depths.append(torch.from_numpy(np.stack([r.depth for r in rs])).float()[:, None])
        return MultiView(images=torch.stack(images), depths=torch.stack(depths))


class InstructPix2PixTeacher:
    """InstructPix2Pix (diffusers) as a `Teacher2D`, from a local pipeline folder."""

    def __init__(self, pipe, steps: int = 20, guidance: float = 7.5, image_guidance: float = 1.5, seed: int = 0):
        self.pipe, self.steps, self.guidance, self.image_guidance, self.seed = pipe, steps, guidance, image_guidance, seed

    @classmethod
    def from_pretrained(cls, local_dir: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32, **kwargs) -> InstructPix2PixTeacher:
        from diffusers import StableDiffusionInstructPix2PixPipeline

        pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(
            str(local_dir), local_files_only=True, torch_dtype=dtype, safety_checker=None, requires_safety_checker=False
        )
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe.to(device), **kwargs)

    @torch.no_grad()
    def edit(self, image: Tensor, instruction: str) -> Tensor:
        """image [B, 3, H, W] in [-1, 1] -> the edit, same shape and range (seeded: reproducible)."""
        out = self.pipe(
            prompt=[instruction] * image.shape[0],
            image=(image.clamp(-1, 1) + 1) / 2,
            num_inference_steps=self.steps,
            guidance_scale=self.guidance,
            image_guidance_scale=self.image_guidance,
            generator=torch.Generator().manual_seed(self.seed),
            output_type="pt",
        ).images
        out = out.to(image.device, torch.float32)
        if out.shape[-2:] != image.shape[-2:]:
            out = F.interpolate(out, size=image.shape[-2:], mode="bilinear", align_corners=False)
        return out * 2 - 1


class BlipCaptioner:
    """BLIP image captioning (transformers) from a local folder: describes image prompts."""

    def __init__(self, processor, model, max_new_tokens: int = 20):
        self.processor, self.model, self.max_new_tokens = processor, model.eval(), max_new_tokens

    @classmethod
    def from_pretrained(cls, local_dir: str | Path, device: str = "cpu", **kwargs) -> BlipCaptioner:
        from transformers import BlipForConditionalGeneration, BlipProcessor

        processor = BlipProcessor.from_pretrained(str(local_dir), local_files_only=True)
        model = BlipForConditionalGeneration.from_pretrained(str(local_dir), local_files_only=True).to(device)
        return cls(processor, model, **kwargs)

    @torch.no_grad()
    def caption(self, image: Tensor) -> list[str]:
        """image [B, 3, H, W] in [-1, 1] -> one caption per image (greedy decoding)."""
        inputs = self.processor(images=list(to_uint8(image)), return_tensors="pt").to(self.model.device)
        ids = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens)
        return [c.strip() for c in self.processor.batch_decode(ids, skip_special_tokens=True)]


class ReferenceTeacher:
    """Edits towards a reference image: caption it, then ask the 2D teacher to match the caption."""

    def __init__(self, teacher, captioner: BlipCaptioner, template: str = "make the person look like {}"):
        self.teacher, self.captioner, self.template = teacher, captioner, template

    def instruction(self, reference: Tensor) -> str:
        return self.template.format(self.captioner.caption(reference[:1])[0])

    def edit_like(self, image: Tensor, reference: Tensor) -> Tensor:
        return self.teacher.edit(image, self.instruction(reference))
