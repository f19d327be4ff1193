"""The shared optimisation loop: steps or a wall-clock budget, tqdm, CSV log, periodic checkpoints.

Every random draw of a step goes through one `torch.Generator` (data, cameras, ray jitter)
or the global stream (dropout); both are checkpointed, so stopping and resuming yields the
same parameters as an uninterrupted run.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from .runlog import RunLog
from .state import TrainState, save_training

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopConfig:
    """Stop at `steps` total steps or after `minutes` of this run, whichever comes first."""

    steps: int | None = None
    minutes: float | None = None
    log_every: int = 10
    checkpoint_every_s: float = 120.0
    grad_clip: float = 1.0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.steps is None and self.minutes is None:
            raise ValueError("give a step count or a time budget (minutes)")


def train_loop(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    sample: Callable[[torch.Generator], Any],
    loss_fn: Callable[[Any, torch.Generator], tuple[Tensor, dict[str, float]]],
    state: TrainState,
    generator: torch.Generator,
    cfg: LoopConfig,
    out: str | Path | None = None,
    runlog: RunLog | None = None,
    meta: dict | None = None,
) -> TrainState:
    """Run until the budget is spent; checkpoint to `out` periodically and at the end."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    start = time.monotonic()
    last_ckpt = start
    deadline = start + cfg.minutes * 60 if cfg.minutes is not None else float("inf")
    total = cfg.steps if cfg.steps is not None else None
    bar = tqdm(total=total, initial=state.step, desc=state.stage, disable=not cfg.progress, dynamic_ncols=True)
    try:
        while (cfg.steps is None or state.step < cfg.steps) and time.monotonic() < deadline:
            t0 = time.monotonic()
            batch = sample(generator)
            loss, metrics = loss_fn(batch, generator)
            if not torch.isfinite(loss):
                raise RuntimeError(f"{state.stage}: non-finite loss at step {state.step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            now = time.monotonic()
            state.step += 1
            state.elapsed_s += now - t0
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.4f}")
            if runlog is not None and (state.step % cfg.log_every == 0 or state.step == 1):
                runlog.write({"step": state.step, "time_s": round(state.elapsed_s, 2), **{k: round(v, 6) for k, v in metrics.items()}})
            if out is not None and now - last_ckpt >= cfg.checkpoint_every_s:
                save_training(out, net, optimizer, state, generator, meta)
                last_ckpt = now
    finally:
        bar.close()
    if out is not None:
        save_training(out, net, optimizer, state, generator, meta)
        log.info("%s: step %d, %.1f s trained, saved %s", state.stage, state.step, state.elapsed_s, out)
    return state
