"""Prompt -> the tokens Eq. 2 attends to, through the network's own (trainable) prompt encoders."""
from __future__ import annotations

from torch import Tensor, nn

from .batches import Prompt


def prompt_tokens(net: nn.Module, prompt: Prompt) -> Tensor:
    """[1, N, ref_dim]: `net.text_prompt` for text features, `net.image_prompt` for a reference."""
    if prompt.kind == "text":
        if prompt.text_tokens is None or prompt.text_pooled is None:
            raise ValueError(f"text prompt {prompt.text!r} has no encoded features")
        return net.text_prompt(prompt.text_tokens, prompt.text_pooled)
    if prompt.kind == "image":
        if prompt.reference is None:
            raise ValueError("image prompt has no reference image")
        return net.image_prompt(prompt.reference)
    raise ValueError(f"unknown prompt kind {prompt.kind!r}")
