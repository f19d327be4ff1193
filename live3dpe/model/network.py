"""EditorNet: every learned part of the 3DPE editor in one module (one state dict, one checkpoint).

image [B,3,S,S] --encoder(prompt tokens)--> triplane --renderer(camera label)--> RenderOutput
reference image --image_prompt--> prompt tokens [B, N, ref_dim]
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .appearance import AppearanceEditor
from .config import ModelConfig
from .encoders import TriplaneEncoder
from .image_prompt import ImagePromptEncoder
from .renderer import TriplaneRenderer
from .text_prompt import MINILM_DIM, TextPromptProjection
from .types import Guide, RenderOutput


def to_input_resolution(image: Tensor, size: int) -> Tensor:
    """The encoders' view of a (larger) guide crop: area-averaged down to `size`."""
    return image if image.shape[-1] == size else F.interpolate(image, size=(size, size), mode="area")


class EditorNet(nn.Module):
    """The 3DPE network sized by `cfg`.

    `encoder`: image (+ prompt tokens) -> triplane (Eq. 2-3; no prompt = Live3D reconstruction).
    `image_prompt`: MAE ViT turning a reference image into prompt tokens.
    `renderer`: triplane + 25-d camera label -> image (EG3D decoder, volume rendering, SR).
    `appearance` (appearance route only, `cfg.appearance_route`): prompt -> colour-transform field
    over the input; the encoder then has no cross-attention and always runs prompt-free.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = TriplaneEncoder(cfg)
        self.image_prompt = ImagePromptEncoder(cfg)
        self.renderer = TriplaneRenderer(cfg)
        # Text prompts: back-end tokens (MiniLM, 384-d) -> ref_dim. The official model has none;
        # the importer leaves it alone. `checkpoint.build_net` resizes it for other back-ends.
        self.text_prompt = TextPromptProjection(MINILM_DIM, cfg.ref_dim)
        self.appearance = AppearanceEditor(cfg) if cfg.appearance_route else None

    def planes(
        self,
        features: dict[str, Tensor] | None,
        image: Tensor,
        label: Tensor,
        tokens: Tensor | None = None,
        colour: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> tuple[Tensor | None, Guide | None]:
        """Prior features (+ prompt tokens, + an image prompt's colour) -> triplane, and on the
        appearance route the input view's `Guide` (image [B, 3, G, G] seen by label [B, 25]) with
        the prompt's colour-transform field; the triplane is then always the prompt-free prior's
        (None without `features`: the input camera's image needs no geometry).

        mask: [B, N] bool over the tokens, True = real (a batch of padded prompts, `PromptBatch`);
        a sample with none is processed as without prompt."""
        if self.appearance is None:
            return self.encoder.fuse(features, tokens, mask), None
        edit = None if tokens is None else self.appearance(to_input_resolution(image, self.cfg.input_resolution), tokens, colour, mask)
        return (None if features is None else self.encoder.fuse(features, None)), Guide(image, label, edit)

    def forward(
        self,
        image: Tensor,
        label: Tensor,
        prompt_tokens: Tensor | None = None,
        *,
        deterministic: bool = False,
        generator=None,
    ) -> RenderOutput:
        """image [B, 3, S, S] in [-1, 1], label [B, 25], prompt_tokens [B or 1, N, ref_dim] | None."""
        planes = self.encoder(image, prompt_tokens)
        return self.renderer(planes, label, deterministic=deterministic, generator=generator)
