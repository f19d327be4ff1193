"""`live3dpe sample`: the demo clip (transport only; the editing commands live in `live3dpe.pipeline`)."""
from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("sample", help="write the demo clip (synthetic moving face + audio tone)")
    p.add_argument("output", type=Path, metavar="OUT.mp4")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--fps", type=float, default=30.0)
    p.set_defaults(func=cmd_sample)


def cmd_sample(args) -> int:
    from .sample import write_sample

    path = write_sample(args.output, args.seconds, args.width, args.height, args.fps)
    print(path)
    return 0
