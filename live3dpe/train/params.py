"""Which parameters each training stage may change.

Stage 1 (prior) trains the reconstruction path; stage 2 (3DPE distillation) freezes it and
trains the prompt side plus E_t, as the official coach does (only `Final_encoder` and
`Ref_encoder` are optimised there); customization (paper §3.3) tunes the prompt encoder and
E_t's normalisation layers only. Module names are `EditorNet` attribute paths.
"""
from __future__ import annotations

from torch import nn

PRIOR_MODULES = ("encoder.elow", "encoder.ehigh", "encoder.fusion", "renderer")
EDIT_MODULES = ("encoder.cross_attention", "encoder.fusion", "image_prompt", "text_prompt")
# the appearance route's stage 2: the prompt side only; it never reads the triplane
APPEARANCE_MODULES = ("appearance", "image_prompt", "text_prompt")
PROMPT_ENCODERS = {"text": "text_prompt", "image": "image_prompt"}
NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d, nn.InstanceNorm2d)


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def adapt_parameter_names(net: nn.Module, prompt_kind: str) -> list[str]:
    """Customization: the prompt encoder of `prompt_kind` and every norm layer inside E_t; on the
    appearance route the prompt encoder and the (small) appearance editor, which carry the edit."""
    if prompt_kind not in PROMPT_ENCODERS:
        raise ValueError(f"prompt kind must be one of {sorted(PROMPT_ENCODERS)}, got {prompt_kind!r}")
    names = [n for n, _ in net.named_parameters() if _under(n, (PROMPT_ENCODERS[prompt_kind],))]
    if getattr(net, "appearance", None) is not None:
        return names + [n for n, _ in net.named_parameters() if _under(n, ("appearance",))]
    fusion = net.get_submodule("encoder.fusion")
    for mod_name, module in fusion.named_modules():
        if isinstance(module, NORM_TYPES):
            prefix = "encoder.fusion." + mod_name if mod_name else "encoder.fusion"
            names += [f"{prefix}.{p}" for p, _ in module.named_parameters(recurse=False)]
    return names


def select_trainable(net: nn.Module, prefixes: tuple[str, ...] | list[str], exact: bool = False) -> list[nn.Parameter]:
    """Freeze everything, then unfreeze parameters under `prefixes` (or named exactly, with `exact`).

    Buffers-like parameters created with requires_grad=False (the MAE sin-cos table) stay frozen.
    Returns the trainable parameters in `named_parameters` order (stable for optimizer state).
    """
    fixed = {n for n, p in net.named_parameters() if not p.requires_grad and n.endswith("pos_embed")}
    wanted = set(prefixes) if exact else None
    params = []
    for name, p in net.named_parameters():
        on = (name in wanted) if exact else _under(name, tuple(prefixes))
        on = on and name not in fixed
        p.requires_grad_(on)
        if on:
            params.append(p)
    if not params:
        raise ValueError(f"no parameters match {list(prefixes)[:5]}")
    return params
