"""`live3dpe train prior|edit|bundle` and `live3dpe adapt`."""
from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path

import torch

from live3dpe.model.text_prompt import DEFAULT_TEXT_BACKEND, make_text_backend, text_backend_usage

log = logging.getLogger(__name__)


def _loop(args: argparse.Namespace):
    from .loop import LoopConfig

    if args.steps is None and args.minutes is None:
        raise ValueError("give --steps and/or --minutes")
    return LoopConfig(steps=args.steps, minutes=args.minutes, checkpoint_every_s=args.checkpoint_every)


def _prior(args: argparse.Namespace) -> int:
    from live3dpe.model.config import get_preset

    from .data import SynthDataSource
    from .perceptual import load_lpips
    from .stages import StageConfig, train_prior

    torch.set_num_threads(args.threads)
    cfg = get_preset(args.preset)
    source = SynthDataSource(args.data, cfg.ref_resolution, text=None, prior_styled_prob=args.styled_prob)
    _, state = train_prior(
        source, args.out, _loop(args), StageConfig(args.batch, args.lr, args.seed, args.views), cfg,
        resume=args.resume, perceptual=load_lpips(args.lpips), text_backend=make_text_backend(args.text_backend),
    )  # fmt: skip
    print(f"prior: step {state.step}, {state.elapsed_s / 60:.1f} min trained -> {args.out}")
    return 0


def _edit(args: argparse.Namespace) -> int:
    from live3dpe.model.checkpoint import read_meta

    from .data import SynthDataSource, TextFeatureCache
    from .perceptual import load_lpips
    from .stages import StageConfig, train_edit

    torch.set_num_threads(args.threads)
    prior = read_meta(args.prior)
    backend = make_text_backend(args.text_backend or prior.text_backend)
    source = SynthDataSource(args.data, prior.config.ref_resolution, text=TextFeatureCache(backend), styles=args.styles, image_prompt_prob=args.image_prompt_prob)
    _, state = train_edit(
        source, args.prior, args.out, _loop(args), StageConfig(args.batch, args.lr, args.seed, prompt_lr=args.prompt_lr),
        resume=args.resume, perceptual=load_lpips(args.lpips), text_backend=backend,
    )  # fmt: skip
    print(f"edit: step {state.step}, {state.elapsed_s / 60:.1f} min trained -> {args.out}")
    return 0


def _bundle(args: argparse.Namespace) -> int:
    from .bundle import main_args

    return main_args(args)


def _pairs_are_photos(args: argparse.Namespace) -> bool:
    """--align auto: a folder with camera labels (dataset.json) holds aligned crops, as exported
    from the synthetic world; without them the images are photos."""
    if args.align == "auto":
        return not (Path(args.pairs) / "dataset.json").exists()
    return args.align == "faces"


def _aligned_photo_pairs(args: argparse.Namespace):
    """The folder's photos aligned exactly as the UI aligns uploads (face found in each before
    photo, its after cropped the same way, the photo's camera estimated)."""
    from live3dpe.model.editor import Editor
    from live3dpe.pipeline.customize import photo_pairs
    from live3dpe.pipeline.portrait import PortraitService
    from live3dpe.stream.sources import read_image

    root = Path(args.pairs)
    befores = sorted(root.glob("*_before.png")) + sorted(root.glob("*_before.jpg"))
    if not befores:
        raise FileNotFoundError(f"{root} has no *_before.png or *_before.jpg images")
    afters = [b.with_name(b.name.replace("_before", "_after")) for b in befores]
    if missing := [a.name for a in afters if not a.exists()]:
        raise FileNotFoundError(f"{root}: missing after images {missing[:3]}")
    prompt = (root / "prompt.txt").read_text().strip().splitlines()[0] if (root / "prompt.txt").exists() else None
    reference = read_image(root / "reference.png") if (root / "reference.png").exists() else None
    style = (root / "style.txt").read_text().strip() if (root / "style.txt").exists() else root.name
    service = PortraitService(Editor.load(args.checkpoint))
    return photo_pairs(service.editor, service.estimator, [read_image(b) for b in befores], [read_image(a) for a in afters], prompt, reference, style)


def _adapt(args: argparse.Namespace) -> int:
    from live3dpe.model.checkpoint import load_checkpoint, save_checkpoint

    from .adapt import AdaptConfig, adapt, load_pairs
    from .data import TextFeatureCache

    torch.set_num_threads(args.threads)
    net, meta = load_checkpoint(args.checkpoint)
    if _pairs_are_photos(args):
        pairs = _aligned_photo_pairs(args)
    else:
        pairs = load_pairs(args.pairs, net.cfg.input_resolution, net.cfg.ref_resolution, TextFeatureCache(meta.text_backend))
    history = adapt(net, pairs, AdaptConfig(minutes=args.minutes, max_steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed))
    info = dict(meta.training, adapted={"style": pairs.prompt.style, "prompt": pairs.prompt.text or "(image)", "pairs": int(pairs.before.shape[0]),
                                        "steps": len(history), "seconds": history[-1]["time_s"] if history else 0.0, "from": str(args.checkpoint)})  # fmt: skip
    save_checkpoint(net, args.out, info)
    log_file = args.log or args.out.replace(".safetensors", ".adapt.csv")
    with open(log_file, "w", newline="") as f:
        if history:
            w = csv.DictWriter(f, list(history[-1]))
            w.writeheader()
            w.writerows(history)
    last = history[-1] if history else {}
    print(f"adapted to {pairs.prompt.style!r} with {pairs.before.shape[0]} pairs: {len(history)} steps, loss {last.get('loss', float('nan')):.4f} -> {args.out} (log {log_file})")
    return 0


def _common(p: argparse.ArgumentParser, steps_default: int | None = None) -> None:
    p.add_argument("--steps", type=int, default=steps_default, help="total optimisation steps")
    p.add_argument("--minutes", type=float, help="wall-clock budget of this run")
    p.add_argument("--batch", type=int, default=2, help="input images per optimisation step (default %(default)s)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of freshly initialised weights and of the batch and augmentation draws; --resume continues the saved RNG state (default %(default)s)")  # fmt: skip
    p.add_argument("--resume", action="store_true", help="continue from OUT's optimizer/RNG state if present")
    p.add_argument("--checkpoint-every", type=float, default=120.0, help="seconds between checkpoints")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--lpips", help="local LPIPS(alex) weights (.safetensors, `lpips` key names); default: SSIM only")


def text_backend_help(default: str) -> str:
    """--text-backend's help (train prior|edit|bundle)."""
    return f"frozen text encoder of the text prompts, recorded in the checkpoint: {text_backend_usage()} (default: {default})"


def register(subparsers) -> None:
    from live3dpe.model.config import PRESETS

    train = subparsers.add_parser("train", help="train the editor: 3D prior, 3DPE distillation, bundled model")
    sub = train.add_subparsers(dest="train_command", metavar="TRAIN_COMMAND", required=True)

    p = sub.add_parser("prior", help="stage 1: multi-view reconstruction (E_low, E_high, E_t, decoder, SR)")
    p.add_argument("--data", required=True, help="synthetic EG3D-layout dataset (`live3dpe data synth`)")
    p.add_argument("--out", required=True, help="checkpoint .safetensors (+ .train.pt optimizer/RNG state)")
    p.add_argument("--preset", default="tiny", help=f"model preset to build and train from scratch: {', '.join(PRESETS)} (default %(default)s)")  # fmt: skip
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default %(default)g)")
    p.add_argument("--views", type=int, choices=(1, 2), default=2, help="rendered views per person and step")
    p.add_argument("--styled-prob", type=float, default=0.5,
                   help="chance that a person is shown in their dataset style (all views) instead of unedited")
    p.add_argument("--text-backend", default=DEFAULT_TEXT_BACKEND, metavar="SPEC", help=text_backend_help(DEFAULT_TEXT_BACKEND) + "; stage 2 keeps it")
    _common(p)
    p.set_defaults(func=_prior)

    p = sub.add_parser("edit", help="stage 2: freeze the prior, distil edits (paper Eq. 4-7)")
    p.add_argument("--data", required=True, help="synthetic EG3D-layout dataset with paired edits (`live3dpe data synth`)")  # fmt: skip
    p.add_argument("--prior", required=True, help="stage-1 checkpoint")
    p.add_argument("--out", required=True, help="checkpoint .safetensors (+ .train.pt optimizer/RNG state)")
    p.add_argument("--styles", nargs="+", help="train on these styles only")
    p.add_argument("--image-prompt-prob", type=float, default=0.4,
                   help="chance, 0..1, that a step prompts with a reference image of the style instead of text "
                   "(default %(default)g; 0 when the dataset has no image prompts)")  # fmt: skip
    p.add_argument("--lr", type=float, default=6e-4, help="learning rate (of E_t when --prompt-lr is given)")
    p.add_argument("--prompt-lr", type=float, help="own learning rate for the freshly initialised prompt side (cross-attention, prompt encoders)")
    p.add_argument("--text-backend", metavar="SPEC", help=text_backend_help("the prior's") + "; another than the prior's gets a fresh text projection")
    _common(p)
    p.set_defaults(func=_edit)

    from .bundle import add_arguments

    p = sub.add_parser("bundle", help="reproduce the bundled default model (data, both stages, export, benchmarks)")
    add_arguments(p)
    p.set_defaults(func=_bundle)

    p = subparsers.add_parser("adapt", help="customize a model to a new style from a few before/after pairs (paper §3.3)")
    p.add_argument("--pairs", required=True, help="folder of <name>_before.png/<name>_after.png + prompt.txt or reference.png (+ style.txt)")
    p.add_argument("--align", choices=("auto", "faces", "none"), default="auto",
                   help="faces: find and align the face in each before photo and crop its after the same way, as the "
                   "UI does; none: the images are aligned crops (with dataset.json camera labels); auto (default): "
                   "none when the folder has dataset.json, else faces")
    p.add_argument("--checkpoint", required=True, help="the live3dpe .safetensors checkpoint to customize")
    p.add_argument("--out", required=True, help="where to write the adapted checkpoint (must end in .safetensors; a .json sidecar is written next to it)")  # fmt: skip
    p.add_argument("--minutes", type=float, default=5.0, help="optimisation time budget in minutes (default %(default)g)")  # fmt: skip
    p.add_argument("--steps", type=int, help="stop after this many steps (default: only the time budget)")
    p.add_argument("--batch", type=int, default=2,
                   help="pairs per step, drawn at random with replacement, capped at the number of pairs (default %(default)s)")  # fmt: skip
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default %(default)g)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random pair draws and of the losses' random draws (default %(default)s)")  # fmt: skip
    p.add_argument("--log", help="loss-vs-time CSV (default: next to --out)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default %(default)s)")
    p.set_defaults(func=_adapt)
