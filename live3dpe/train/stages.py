"""Stage drivers: build (or resume) the network, optimizer and RNG, then run the loop.

Stage 1 `train_prior`: the reconstruction path from scratch (Live3D's role).
Stage 2 `train_edit`: start from a prior checkpoint, freeze it, distil edits (Eq. 4-7).
A run resumes when `resume` is set and `out` already has a side file. Each stage takes the text
back-end whose features its source's text prompts carry; the network's text projection is made
for it (`use_text_backend`), so the checkpoint records the back-end actually used.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from live3dpe.model.checkpoint import build_net, load_checkpoint, use_text_backend
from live3dpe.model.config import ModelConfig, get_preset
from live3dpe.model.text_prompt import TextBackend

from .augment import CameraJitter
from .batches import EditBatch, PriorBatch
from .loop import LoopConfig, train_loop
from .objectives import AppearanceWeights, EditWeights, NetPrior, PriorWeights, appearance_loss, edit_loss, prior_loss
from .params import APPEARANCE_MODULES, EDIT_MODULES, PRIOR_MODULES, select_trainable
from .runlog import RunLog
from .state import TrainState, load_training, restore, side_path

log = logging.getLogger(__name__)


class PriorSource(Protocol):
    def prior_batch(self, batch: int, generator: torch.Generator, views: int) -> PriorBatch: ...


class EditSource(Protocol):
    def edit_batch(self, batch: int, generator: torch.Generator) -> EditBatch: ...


@dataclass(frozen=True)
class StageConfig:
    """Optimisation settings shared by both stages."""

    batch: int = 4
    lr: float = 1e-3
    seed: int = 0
    views: int = 2  # stage 1 rendered views per person (see SynthDataSource.prior_batch)
    # stage 2: learning rate of the freshly initialised prompt side (cross-attention, prompt
    # encoders) while the pretrained E_t, shared with the prompt-free path, moves at `lr`.
    # Measured on the bundle (36 min each): 3e-4 / 2e-3 vs one 6e-4 edit equally well
    # (text prompt 13.1 vs 13.2 dB novel view), so the bundle keeps one rate
    prompt_lr: float | None = None


def log_path(out: str | Path) -> Path:
    """The CSV log next to a checkpoint: model.safetensors -> model.log.csv."""
    out = Path(out)
    return out.with_name(out.stem + ".log.csv")


def _start(out: Path, resume: bool, build, text_backend: TextBackend | None) -> tuple[nn.Module, dict | None]:
    """The network to train (resumed from `out` or built) reading `text_backend`'s features
    (None: whichever it reads)."""
    if resume and side_path(out).exists():
        net, _meta, side = load_training(out)
        log.info("resuming %s at step %d", out, side["step"])
    else:
        net, side = build(), None
    if text_backend is not None:
        use_text_backend(net, text_backend.name, text_backend.dim)
    return net, side


def transfer_weights(source: str | Path, cfg: ModelConfig) -> nn.Module:
    """A network of `cfg` that starts from every tensor of checkpoint `source` with the same name
    and shape (e.g. a `tiny` model for its appearance-route twin `small`); the rest keeps its
    initialisation. Logs what was not carried over."""
    src, _ = load_checkpoint(source)
    net = build_net(cfg, src.text_prompt.in_dim, src.text_prompt.backend)
    own = net.state_dict()
    carried = {k: v for k, v in src.state_dict().items() if k in own and own[k].shape == v.shape}
    net.load_state_dict(carried, strict=False)
    log.info("initialised %d of %d tensors from %s; new: %s", len(carried), len(own), source, sorted({k.split(".")[0] for k in own if k not in carried}))
    return net


def _optimizer(params: list[nn.Parameter] | list[dict], lr: float) -> torch.optim.Optimizer:
    """Adam over parameters or parameter groups (a group's own "lr" overrides `lr`)."""
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.99))


def train_prior(
    source: PriorSource,
    out: str | Path,
    loop: LoopConfig,
    stage: StageConfig = StageConfig(),
    model: ModelConfig | str = "tiny",
    weights: PriorWeights = PriorWeights(),
    resume: bool = False,
    meta: dict | None = None,
    perceptual: nn.Module | None = None,
    init: str | Path | None = None,
    text_backend: TextBackend | None = None,
) -> tuple[nn.Module, TrainState]:
    """Stage 1: multi-view reconstruction training of E_low, E_high, E_t, decoder and SR.
    init: start from this checkpoint's matching tensors (`transfer_weights`) instead of scratch.
    text_backend: the one later stages will use (stage 1 trains no text projection); default:
    the registry's default, or `init`'s."""
    out = Path(out)
    cfg = get_preset(model) if isinstance(model, str) else model
    if not resume or not side_path(out).exists():
        torch.manual_seed(stage.seed)
    net, side = _start(out, resume, lambda: build_net(cfg) if init is None else transfer_weights(init, cfg), text_backend)
    net.train()
    opt = _optimizer(select_trainable(net, PRIOR_MODULES), stage.lr)
    gen = torch.Generator().manual_seed(stage.seed)
    state = restore(side, opt, gen) if side else TrainState("prior")
    info = {"stage_config": asdict(stage), "weights": asdict(weights), "lpips": perceptual is not None, **(meta or {})}
    runlog = RunLog(log_path(out))
    try:
        state = train_loop(
            net, opt,
            lambda g: source.prior_batch(stage.batch, g, stage.views),
            lambda b, g: prior_loss(net, b, g, weights, perceptual),
            state, gen, loop, out, runlog, info,
        )  # fmt: skip
    finally:
        runlog.close()
    return net, state


def train_edit(
    source: EditSource,
    prior_ckpt: str | Path,
    out: str | Path,
    loop: LoopConfig,
    stage: StageConfig = StageConfig(lr=6e-4),
    weights: EditWeights = EditWeights(),
    jitter: CameraJitter = CameraJitter(),
    resume: bool = False,
    meta: dict | None = None,
    perceptual: nn.Module | None = None,
    text_backend: TextBackend | None = None,
) -> tuple[nn.Module, TrainState]:
    """Stage 2: freeze the prior; train prompt encoders, cross-attention and E_t by distillation.
    text_backend: the one that encoded `source`'s text prompts; default: the prior's."""
    out = Path(out)
    prior_net, _ = load_checkpoint(prior_ckpt)
    prior = NetPrior(prior_net)
    if not resume or not side_path(out).exists():
        torch.manual_seed(stage.seed)
    student, side = _start(out, resume, lambda: copy.deepcopy(prior_net), text_backend)
    # Frozen parts run in eval mode (no dropout in E_low's ASPP); trained parts have no dropout.
    student.eval()
    params = select_trainable(student, EDIT_MODULES)
    if stage.prompt_lr is not None:
        shared = {id(p) for p in student.encoder.fusion.parameters()}
        params = [
            {"params": [p for p in params if id(p) in shared]},
            {"params": [p for p in params if id(p) not in shared], "lr": stage.prompt_lr},
        ]
    opt = _optimizer(params, stage.lr)
    gen = torch.Generator().manual_seed(stage.seed)
    state = restore(side, opt, gen) if side else TrainState("edit")
    info = {"stage_config": asdict(stage), "weights": asdict(weights), "lpips": perceptual is not None, "prior": str(prior_ckpt), **(meta or {})}
    runlog = RunLog(log_path(out))
    try:
        state = train_loop(
            student, opt,
            lambda g: source.edit_batch(stage.batch, g),
            lambda b, g: edit_loss(student, prior, b, g, jitter, weights, perceptual),
            state, gen, loop, out, runlog, info,
        )  # fmt: skip
    finally:
        runlog.close()
    return student, state


def train_appearance(
    source: EditSource,
    init: str | Path,
    out: str | Path,
    loop: LoopConfig,
    stage: StageConfig = StageConfig(lr=1e-3),
    weights: AppearanceWeights = AppearanceWeights(),
    resume: bool = False,
    meta: dict | None = None,
    text_backend: TextBackend | None = None,
) -> tuple[nn.Module, TrainState]:
    """Stage 2 on the appearance route: the prompt encoders and the appearance editor learn the 2D
    edit at the input view (`appearance_loss`), starting from checkpoint `init` of an
    appearance-route preset. They never read the triplane, so this stage can run beside stage 1;
    `join_stages` then takes each stage's own parameters.
    text_backend: the one that encoded `source`'s text prompts; default: `init`'s."""
    out = Path(out)
    if not resume or not side_path(out).exists():
        torch.manual_seed(stage.seed)
    net, side = _start(out, resume, lambda: load_checkpoint(init)[0], text_backend)
    if not net.cfg.appearance_route:
        raise ValueError(f"{init}: preset {net.cfg.name!r} has no appearance editor; use train_edit")
    net.eval()
    opt = _optimizer(select_trainable(net, APPEARANCE_MODULES), stage.lr)
    gen = torch.Generator().manual_seed(stage.seed)
    state = restore(side, opt, gen) if side else TrainState("appearance")
    info = {"stage_config": asdict(stage), "weights": asdict(weights), "init": str(init), **(meta or {})}
    runlog = RunLog(log_path(out))
    try:
        state = train_loop(
            net, opt,
            lambda g: source.edit_batch(stage.batch, g),
            lambda b, g: appearance_loss(net, b, g, weights),
            state, gen, loop, out, runlog, info,
        )  # fmt: skip
    finally:
        runlog.close()
    return net, state


def join_stages(prior: nn.Module, appearance: nn.Module) -> nn.Module:
    """The appearance route's final network: stage 1's triplane path with stage 2's prompt side
    (`APPEARANCE_MODULES`); the two stages train disjoint parameters, so this is exact."""
    use_text_backend(prior, appearance.text_prompt.backend, appearance.text_prompt.in_dim)
    state = prior.state_dict()
    state.update({k: v for k, v in appearance.state_dict().items() if k.split(".")[0] in APPEARANCE_MODULES})
    prior.load_state_dict(state, strict=True)
    return prior
