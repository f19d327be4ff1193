"""`live3dpe sample`: the demo clip (transport only; the editing commands live in `live3dpe.pipeline`)."""
from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("sample", help="write the demo clip (synthetic moving face + audio tone)")
    p.add_argument("output", type=Path, metavar="OUT.mp4",
                   help="where to write the clip: .mp4, .mov or .mkv in an existing folder (H.264 video, a 440 Hz tone as audio)")  # fmt: skip
    p.add_argument("--seconds", type=float, default=4.0, help="clip length in seconds, above 0 (default %(default)g)")
    p.add_argument("--width", type=int, default=640, help="frame width in pixels, at least 64 (default %(default)s)")
    p.add_argument("--height", type=int, default=480, help="frame height in pixels, at least 64 (default %(default)s)")
    p.add_argument("--fps", type=float, default=30.0, help="frames per second (default %(default)g)")
    p.set_defaults(func=cmd_sample)


def cmd_sample(args) -> int:
    from .sample import write_sample

    path = write_sample(args.output, args.seconds, args.width, args.height, args.fps)
    print(path)
    return 0
