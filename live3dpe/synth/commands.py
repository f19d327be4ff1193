"""`live3dpe data synth`: render a synthetic EG3D-layout dataset with paired edits."""
from __future__ import annotations

import argparse

from live3dpe.synth.dataset import SynthConfig, write_dataset
from live3dpe.synth.styles import STYLES


def _synth(args: argparse.Namespace) -> int:
    styles = tuple(args.styles) if args.styles else tuple(STYLES)
    cfg = SynthConfig(
        people=args.people,
        views=args.views,
        styles=styles,
        styles_per_person=args.styles_per_person,
        resolution=args.resolution,
        references=args.references,
        seed=args.seed,
        supersample=args.supersample,
    )
    path = write_dataset(args.out, cfg, workers=args.workers, progress=True)
    print(f"wrote {cfg.people * cfg.styles_per_person * cfg.views} pairs to {path.parent}")
    return 0


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="datasets: make synthetic training data")
    sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    p = sub.add_parser("synth", help="render synthetic 3D portraits with ground-truth edits (EG3D layout)")
    p.add_argument("--out", required=True, help="output folder (becomes an EG3D dataset root)")
    p.add_argument("--people", type=int, default=16,
                   help="synthetic people to render; the dataset holds people x --styles-per-person x --views pairs (default %(default)s)")  # fmt: skip
    p.add_argument("--views", type=int, default=4, help="cameras per person and style")
    p.add_argument("--styles", nargs="+", choices=sorted(STYLES), help="edit styles (default: all)")
    p.add_argument("--styles-per-person", type=int, default=1,
                   help="edit styles drawn for each person, 1..the number of --styles (default %(default)s)")  # fmt: skip
    p.add_argument("--resolution", type=int, default=128, help="side of the square images in pixels (default %(default)s)")  # fmt: skip
    p.add_argument("--references", type=int, default=4, help="image prompts rendered per style")
    p.add_argument("--supersample", type=int, default=1, help="odd antialiasing factor (3 looks better, ~5x slower)")
    p.add_argument("--workers", type=int, default=1, help="processes")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the people, cameras, phrasings and image prompts drawn: the same seed and options make the same dataset (default %(default)s)")  # fmt: skip
    p.set_defaults(func=_synth)
