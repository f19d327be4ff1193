"""Map the official 3DPE checkpoint (`3dpe.pt`) onto `EditorNet(PAPER)` and back.

The official file is a dict with `encoder_state_dict` (327 keys) and `renderer_state_dict`
(43 keys); anything else in it is ignored. The mapping is an explicit table of key-prefix
rules (official <-> ours, `{name}` matches an integer) and is checked strictly: every
official key is mapped with a matching shape or is on the known-unused list
(CONVENTIONS.md §1), and every one of our keys is filled unless the official model has no
such part (the text-prompt projection). Anything else raises `CheckpointMismatchError`
naming the keys.

The Live3D reconstruction encoder (`EG3DInvEncoder`, 170 keys: the encoder keys without
`Ref_encoder.*`) loads the same way into the encoder's prior and fusion parts.
"""
from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .config import ModelConfig
from .superres import fir_filter

if TYPE_CHECKING:
    from .network import EditorNet

ENCODER = "encoder_state_dict"
RENDERER = "renderer_state_dict"
SECTIONS = (ENCODER, RENDERER)

# Our keys the official model has no counterpart for; they keep their current values.
OURS_NOT_IN_OFFICIAL = ("text_prompt.",)
# ResNet-34 stages after layer2 that the official encoder builds but never runs: (stage, blocks, width / layer2 width).
_UNUSED_RESNET_STAGES = ((3, 6, 2), (4, 3, 4))


def _encoder_rules(cfg: ModelConfig) -> list[tuple[str, str]]:
    """(official prefix, our prefix) rules for `encoder_state_dict`; specific rules come first."""
    n_rates = len(cfg.aspp_rates)
    return [
        # E_low backbone: smp ResNet-34 (BatchNorm removed)
        ("encoder.conv1.", "encoder.elow.stem."),
        ("encoder.layer{s}.{i}.downsample.0.", "encoder.elow.layer{s}.{i}.shortcut."),
        ("encoder.layer{s}.{i}.", "encoder.elow.layer{s}.{i}."),
        # E_low ASPP: smp DeepLabV3 decoder; branch order 1x1, one per rate, pooling
        ("decoder.0.convs.0.0.", "encoder.elow.aspp.point."),
        *((f"decoder.0.convs.{k + 1}.0.", f"encoder.elow.aspp.atrous.{k}.") for k in range(n_rates)),
        (f"decoder.0.convs.{n_rates + 1}.1.", "encoder.elow.aspp.pooled."),
        ("decoder.0.project.0.", "encoder.elow.aspp.project."),
        ("decoder.1.", "encoder.elow.aspp.refine."),
        # F
        ("F_encoder.patchembed.", "encoder.elow.transformer.patch_embed."),
        ("F_encoder.blocks.{i}.mlp.dwconv.dwconv.", "encoder.elow.transformer.blocks.{i}.mlp.dwconv."),
        ("F_encoder.blocks.{i}.", "encoder.elow.transformer.blocks.{i}."),
        ("F_encoder.net.", "encoder.elow.head."),
        # E_high
        ("EHigh_encoder.net.", "encoder.ehigh.net."),
        # E_t (official typo `pathembed` kept on their side only)
        ("Final_encoder.net.0.", "encoder.fusion.merge."),
        ("Final_encoder.pathembed.", "encoder.fusion.transformer.patch_embed."),
        ("Final_encoder.block.mlp.dwconv.dwconv.", "encoder.fusion.transformer.blocks.0.mlp.dwconv."),
        ("Final_encoder.block.", "encoder.fusion.transformer.blocks.0."),
        ("Final_encoder.output_net.", "encoder.fusion.head."),
        # prompt side (Eq. 2): MAE reference encoder and cross-attention
        ("Ref_encoder.mae_encoder.", "image_prompt."),
        ("Ref_encoder.pre_conv.", "encoder.cross_attention.pre_conv."),
        ("Ref_encoder.patch_emb.", "encoder.cross_attention.patch_embed."),
        ("Ref_encoder.proj_tail.", "encoder.cross_attention.proj_tail."),
    ]


def _renderer_rules() -> list[tuple[str, str]]:
    """(official prefix, our prefix) rules for `renderer_state_dict`."""
    return [
        ("const", "renderer.const"),
        ("decoder.net.0.", "renderer.decoder.hidden."),
        ("decoder.net.2.", "renderer.decoder.out."),
        ("superresolution.block{b}.", "renderer.superres.block{b}."),
    ]


def _compile(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)
    regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>\\d+)" for i, p in enumerate(parts))
    return re.compile(regex)


def _translate(key: str, rules: list[tuple[str, str]], to_ours: bool) -> str | None:
    for official, ours in rules:
        source, target = (official, ours) if to_ours else (ours, official)
        m = _compile(source).match(key)
        if m:
            return target.format(**m.groupdict()) + key[m.end():]
    return None


def official_key_map(net: EditorNet) -> dict[str, tuple[str, str]]:
    """Our state-dict key -> (section, official key), for every key of `net` the official model has.

    Raises ValueError if one of our keys has no rule and is not a known official-less part:
    that is a bug in the table, not a checkpoint problem.
    """
    rules = {ENCODER: _encoder_rules(net.cfg), RENDERER: _renderer_rules()}
    mapping: dict[str, tuple[str, str]] = {}
    unmapped = []
    for key in net.state_dict():
        if key.startswith(OURS_NOT_IN_OFFICIAL):
            continue
        section = RENDERER if key.startswith("renderer.") else ENCODER
        official = _translate(key, rules[section], to_ours=False)
        if official is None:
            unmapped.append(key)
        else:
            mapping[key] = (section, official)
    if unmapped:
        raise ValueError(f"no official counterpart rule for our keys: {unmapped}")
    return mapping


class CheckpointMismatchError(ValueError):
    """A checkpoint's keys or shapes do not fit the model; lists every offending key."""

    def __init__(
        self,
        missing: list[str],
        unexpected: list[str],
        wrong_shape: dict[str, tuple[tuple[int, ...], tuple[int, ...]]],
        what: str = "checkpoint",
    ):
        self.missing = sorted(missing)
        self.unexpected = sorted(unexpected)
        self.wrong_shape = dict(sorted(wrong_shape.items()))
        lines = [f"{what} does not match the model:"]
        if self.missing:
            lines.append(f"  missing keys ({len(self.missing)}): {self.missing}")
        if self.unexpected:
            lines.append(f"  unexpected keys ({len(self.unexpected)}): {self.unexpected}")
        for k, (want, got) in self.wrong_shape.items():
            lines.append(f"  wrong shape for {k}: expected {list(want)}, got {list(got)}")
        super().__init__("\n".join(lines))


@dataclass
class ImportReport:
    """What an import did: official keys loaded and ignored, our keys left untouched."""

    loaded: list[str] = field(default_factory=list)
    ignored_official: list[str] = field(default_factory=list)
    not_in_checkpoint: list[str] = field(default_factory=list)


def _load_file(path: str | PathLike) -> object:
    """`torch.load` with weights only (no code from the file runs), its failures as one clear ValueError.

    torch's own messages for a refused file suggest `weights_only=False`, i.e. running the
    file's code: exactly what must not be done with a checkpoint of unknown origin."""
    if Path(path).is_file():
        with open(path, "rb") as f:
            head = f.read(4)
        if not head:
            raise ValueError(f"{path} is empty, not a checkpoint")
        if head != b"PK\x03\x04" and head[:1] != b"\x80":  # torch.save writes a zip; old files are pickles
            raise ValueError(f"{path} is not a PyTorch checkpoint (neither a torch.save zip archive nor a pickle)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower():
            raise ValueError(
                f"{path} is not a valid or safe checkpoint: it holds objects other than tensors and plain "
                "containers, and loading those would run code from the file; refused"
            ) from None
        raise ValueError(f"{path} is not a PyTorch checkpoint (unreadable pickle: {err})") from None
    except (EOFError, KeyError, RuntimeError, ValueError, zipfile.BadZipFile) as err:  # truncated, text, damaged zip
        reason = f"{type(err).__name__}: {err}".splitlines()[0][:200]
        raise ValueError(f"{path} is not a PyTorch checkpoint or is damaged ({reason})") from None


def read_checkpoint(source: str | PathLike | Mapping) -> Mapping:
    """A checkpoint dict from a path (`torch.load`, weights only, on CPU) or as given."""
    ckpt = source if isinstance(source, Mapping) else _load_file(source)
    if not isinstance(ckpt, Mapping):
        raise ValueError(f"checkpoint must be a dict of state dicts, got {type(ckpt).__name__}")
    return ckpt


def _section(ckpt: Mapping, name: str) -> Mapping[str, Tensor]:
    sd = ckpt.get(name)
    if not isinstance(sd, Mapping):
        raise ValueError(f"checkpoint has no {name!r} dict (top-level keys: {sorted(map(str, ckpt))})")
    bad = [k for k, v in sd.items() if not isinstance(v, Tensor)]
    if bad:
        raise ValueError(f"{name} entries are not tensors: {bad}")
    return sd


def _load(
    net: EditorNet,
    given: dict[tuple[str, str], Tensor],
    key_map: dict[str, tuple[str, str]],
    unused: dict[tuple[str, str], Tensor],
    what: str,
) -> ImportReport:
    """Check `given` ((section, official key) -> tensor) against `key_map` and `unused`, then load.

    Every expected key must be present with our shape; unused keys are shape-checked and skipped.
    """
    ours = net.state_dict()
    wanted = {v: k for k, v in key_map.items()}
    expected_shapes = {sk: tuple(ours[k].shape) for sk, k in wanted.items()} | {sk: tuple(v.shape) for sk, v in unused.items()}
    missing = [f"{s}/{k}" for (s, k) in expected_shapes if (s, k) not in given]
    unexpected = [f"{s}/{k}" for (s, k) in given if (s, k) not in expected_shapes]
    wrong_shape = {
        f"{s}/{k}": (expected_shapes[(s, k)], tuple(v.shape))
        for (s, k), v in given.items()
        if (s, k) in expected_shapes and tuple(v.shape) != expected_shapes[(s, k)]
    }
    if missing or unexpected or wrong_shape:
        raise CheckpointMismatchError(missing, unexpected, wrong_shape, what)
    state = {wanted[sk]: v for sk, v in given.items() if sk in wanted}
    result = net.load_state_dict(state, strict=False)  # key_map only holds our own keys: nothing unexpected
    return ImportReport(
        loaded=sorted(state),
        ignored_official=sorted(f"{s}/{k}" for (s, k) in unused),
        not_in_checkpoint=sorted(result.missing_keys),
    )


def import_official(net: EditorNet, checkpoint: str | PathLike | Mapping) -> ImportReport:
    """Load the official `3dpe.pt` (path or dict) into `net`; returns what was loaded and skipped."""
    ckpt = read_checkpoint(checkpoint)
    given = {(s, k): v for s in SECTIONS for k, v in _section(ckpt, s).items()}
    unused = {(s, k): v for s, values in official_unused(net.cfg).items() for k, v in values.items()}
    return _load(net, given, official_key_map(net), unused, "official 3DPE checkpoint")


def import_live3d_encoder(net: EditorNet, checkpoint: str | PathLike | Mapping) -> ImportReport:
    """Load a Live3D reconstruction encoder (EG3DInvEncoder, 'LT') into `net.encoder`'s prior and E_t.

    Accepts a flat state dict or a dict holding it under `encoder_state_dict`. The prompt
    side (cross-attention, image prompt) and the renderer are left as they are.
    """
    ckpt = read_checkpoint(checkpoint)
    sd = _section(ckpt, ENCODER) if ENCODER in ckpt else _section({ENCODER: ckpt}, ENCODER)
    key_map = {k: v for k, v in official_key_map(net).items() if v[0] == ENCODER and not v[1].startswith("Ref_encoder.")}
    unused = {(ENCODER, k): v for k, v in official_unused(net.cfg)[ENCODER].items()}
    return _load(net, {(ENCODER, k): v for k, v in sd.items()}, key_map, unused, "Live3D encoder checkpoint")


def official_unused(cfg: ModelConfig) -> dict[str, dict[str, Tensor]]:
    """Official keys that exist in the file but play no part in our forward pass, with the
    value an export writes (CONVENTIONS.md §1): ResNet layer3/layer4 (only two stages run),
    the SR noise inputs (the SR runs without noise) as zeros, and the SR `resample_filter`
    buffers, which always hold the fixed binomial filter our SR builds itself.
    """
    enc: dict[str, Tensor] = {}
    prev = cfg.elow_channels[1]
    for stage, blocks, mult in _UNUSED_RESNET_STAGES:
        width = cfg.elow_channels[1] * mult
        for i in range(blocks):
            cin = prev if i == 0 else width
            p = f"encoder.layer{stage}.{i}."
            shapes = {"conv1.weight": (width, cin, 3, 3), "conv1.bias": (width,), "conv2.weight": (width, width, 3, 3), "conv2.bias": (width,)}
            if i == 0:
                shapes |= {"downsample.0.weight": (width, cin, 1, 1), "downsample.0.bias": (width,)}
            enc |= {p + k: torch.zeros(shape) for k, shape in shapes.items()}
        prev = width
    ren: dict[str, Tensor] = {}
    for b in range(len(cfg.sr_channels)):
        res = cfg.render.neural_resolution * 2 ** (b + 1)
        ren[f"superresolution.block{b}.resample_filter"] = fir_filter()
        for conv in ("conv0", "conv1"):
            p = f"superresolution.block{b}.{conv}."
            ren |= {p + "noise_strength": torch.zeros(()), p + "noise_const": torch.zeros(res, res), p + "resample_filter": fir_filter()}
    return {ENCODER: enc, RENDERER: ren}


def export_official(net: EditorNet) -> dict[str, dict[str, Tensor]]:
    """`net` in the official checkpoint layout, unused keys included (see `official_unused`).

    Tensors share storage with `net` (like `state_dict`).
    """
    out: dict[str, dict[str, Tensor]] = {s: {} for s in SECTIONS}
    state = net.state_dict()
    for our_key, (section, key) in official_key_map(net).items():
        out[section][key] = state[our_key]
    for section, values in official_unused(net.cfg).items():
        out[section] |= values
    return out
