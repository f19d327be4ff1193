"""Resumable training checkpoints: weights through the model's safetensors checkpoint,
everything else (optimizer moments, step, RNG streams, elapsed time) in a side file.

The side file `<ckpt>.train.pt` holds tensors and plain Python values only, so it loads
with `torch.load(weights_only=True)`. Restoring both RNG streams (the global one drives
dropout, the trainer's generator drives data, cameras and ray jitter) makes a resumed run
take exactly the steps the uninterrupted run would have taken.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from live3dpe.model.checkpoint import load_checkpoint, save_checkpoint


def side_path(path: str | Path) -> Path:
    """Where the optimizer/RNG state of checkpoint `path` lives."""
    p = Path(path)
    return p.with_name(p.stem + ".train.pt")


@dataclass
class TrainState:
    """Counters that must survive a restart."""

    stage: str
    step: int = 0
    elapsed_s: float = 0.0
    extra: dict = field(default_factory=dict)


def save_training(
    path: str | Path,
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    generator: torch.Generator,
    meta: dict | None = None,
) -> Path:
    """Write weights (safetensors + JSON meta) and the side file; both replaced atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(meta or {}, stage=state.stage, step=state.step, elapsed_s=round(state.elapsed_s, 2))
    save_checkpoint(net, path, meta)
    side = {
        "optimizer": optimizer.state_dict(),
        "stage": state.stage,
        "step": state.step,
        "elapsed_s": state.elapsed_s,
        "extra": state.extra,
        "rng_global": torch.get_rng_state(),
        "rng_generator": generator.get_state(),
    }
    tmp = side_path(path).with_suffix(".tmp")
    torch.save(side, tmp)
    tmp.replace(side_path(path))
    return path


def load_training(path: str | Path) -> tuple[torch.nn.Module, dict, dict | None]:
    """-> (net, meta, side state or None when the checkpoint has no side file, e.g. a bundled model)."""
    net, meta = load_checkpoint(path)
    side = side_path(path)
    state = torch.load(side, map_location="cpu", weights_only=True) if side.exists() else None
    return net, meta, state


def restore(side: dict, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> TrainState:
    """Apply a side file to a freshly built optimizer and generator; returns the counters."""
    optimizer.load_state_dict(side["optimizer"])
    torch.set_rng_state(side["rng_global"])
    generator.set_state(side["rng_generator"])
    return TrainState(stage=side["stage"], step=int(side["step"]), elapsed_s=float(side["elapsed_s"]), extra=dict(side["extra"]))
