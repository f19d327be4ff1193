"""`live3dpe eval`: the quality suite (Table 1 in the synthetic world, temporal stability), and with
`--real` / `--real-clip` the same editor on real portraits and a real video."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from live3dpe.evaluation.facestats import DEFAULT_PROMPTS

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    from live3dpe.model.known_styles import prompt_help_epilog

    p = subparsers.add_parser(
        "eval",
        help="measure edit quality, identity, 3D consistency and flicker (synthetic ground truth, or real faces)",
        description="Compare this editor with '2D edit then 3D prior' and reconstruction only on unseen synthetic people, "
        "and measure flicker with and without triplane smoothing. Writes quality.json and quality.md. "
        "With --real DIR: edit a folder of real portraits and measure identity (dlib), colour direction, sharpness, "
        "spread and time; writes real_faces.json/.md, a contact sheet and the edits pasted into the photos. "
        "With --real-clip CLIP: identity, flicker with and without smoothing and fps on a real video.",
        epilog=prompt_help_epilog(),
    )
    real = p.add_mutually_exclusive_group()
    real.add_argument("--real", type=Path, default=None, metavar="DIR", help="folder of real portraits (aligned or not)")
    real.add_argument("--real-clip", type=Path, default=None, metavar="CLIP.mp4", help="a real talking-head video")
    p.add_argument("--references", type=Path, default=None, metavar="DIR", help="with --real: reference image prompts, same file names as the portraits")
    p.add_argument("--prompts", nargs="+", default=None, metavar="TEXT", help=f"with --real/--real-clip: text prompts (default {', '.join(repr(x) for x in DEFAULT_PROMPTS)})")
    p.add_argument("--max-frames", type=int, default=60, metavar="N", help="with --real-clip: frames to process from the start (default 60)")
    p.add_argument("--id-samples", type=int, default=12, metavar="N", help="with --real-clip: frames sampled for identity (default 12)")
    p.add_argument("--weights", default="default", help="'default', a preset, or a .safetensors checkpoint")
    p.add_argument("--device", default="cpu", help="torch device to run the editor on, e.g. cpu, cuda, cuda:1, mps (default %(default)s)")  # fmt: skip
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"),
                   help="compute precision: fp16/bf16 run convolutions and matmuls under autocast, weights stay fp32; recorded in the reports (default %(default)s)")  # fmt: skip
    p.add_argument("--people", type=int, default=3, help="unseen people, one edit style each (default 3)")
    p.add_argument("--yaws", default=None, metavar="DEG,...", help="evaluation views in degrees (write --yaws=-40,0,40 for negative values); synthetic: input at 0, default -35,-15,0,15,35; --real: novel views besides the input camera, default -30,-20,20,30")
    p.add_argument("--styles", default=None, metavar="NAME,...", help="edit styles to cycle through (default bronze,zombie,red_hair; 'all' for every style)")
    p.add_argument("--no-text", dest="text", action="store_false", help="skip the held-out text prompt rows")
    p.add_argument("--frames", type=int, default=20, help="talking-head frames for flicker/jitter (default 20)")
    p.add_argument("--arcface", type=Path, default=None, metavar="MODEL.onnx", help="local insightface recognition model")
    p.add_argument("--clip", type=Path, default=None, metavar="DIR", help="local transformers CLIPModel folder")
    p.add_argument("--out", type=Path, default=None, help="output folder (default benchmarks/results; benchmarks/results/real_faces with --real/--real-clip)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the synthetic people, their reference images and the talking-head sequence; "
                   "not used with --real/--real-clip (default %(default)s)")  # fmt: skip
    p.set_defaults(func=cmd_eval)


def _yaws(text: str | None, default: tuple[float, ...]) -> tuple[float, ...]:
    if text is None:
        return default
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"--yaws must be comma-separated degrees, got {text!r}") from None


def _load_editor(args: argparse.Namespace):
    import torch

    from live3dpe.model.editor import Editor

    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.precision]
    return Editor.load(args.weights, device=args.device, dtype=dtype)


def cmd_eval(args: argparse.Namespace) -> int:
    if args.real is not None:
        return cmd_real(args)
    if args.real_clip is not None:
        return cmd_real_clip(args)

    from live3dpe.evaluation.compare import LearnedMetrics
    from live3dpe.evaluation.learned import load_clip, load_identity
    from live3dpe.evaluation.suite import SuiteConfig, markdown, run_suite

    editor = _load_editor(args)
    learned = LearnedMetrics(identity=load_identity(args.arcface), clip=load_clip(args.clip))
    cfg = SuiteConfig(
        people=args.people,
        yaws_deg=_yaws(args.yaws, SuiteConfig.yaws_deg),
        styles=SuiteConfig.styles if args.styles is None else None if args.styles == "all" else tuple(args.styles.split(",")),
        text=args.text,
        sequence_frames=args.frames,
        seed=args.seed,
    )
    payload = run_suite(editor, cfg, learned)
    out = args.out or Path("benchmarks/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality.json").write_text(json.dumps(payload, indent=1, allow_nan=True) + "\n")
    md = markdown(payload)
    (out / "quality.md").write_text("# Quality (synthetic world)\n\n" + md)
    print(md)
    log.info("wrote %s and %s in %.0f s", out / "quality.json", out / "quality.md", payload["seconds"])
    return 0


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(text)
    tmp.replace(path)


def cmd_real(args: argparse.Namespace) -> int:
    """Real portraits -> real_faces.json, real_faces.md, contact_sheet.jpg and pasted/ under --out."""
    from live3dpe.evaluation.identity import load_dlib_identity
    from live3dpe.evaluation.learned import Unavailable
    from live3dpe.evaluation.real import RealConfig, markdown, run_real
    from live3dpe.evaluation.sheet import write_image
    from live3dpe.pipeline.portrait import PortraitService
    from live3dpe.pose import FacePoseEstimator

    cfg = RealConfig(prompts=tuple(args.prompts or DEFAULT_PROMPTS), yaws_deg=_yaws(args.yaws, RealConfig.yaws_deg))
    identity = load_dlib_identity()
    if isinstance(identity, Unavailable):
        log.warning("identity not measured: %s", identity.reason)
    out = args.out or Path("benchmarks/results/real_faces")
    out.mkdir(parents=True, exist_ok=True)
    service = PortraitService(_load_editor(args), FacePoseEstimator(max_faces=1, crop_size=512, static_image=True))
    payload, sheet = run_real(service, args.real, args.references, identity, cfg, photos=out / "pasted")
    sheet_name = None
    if sheet is not None:
        sheet_name = write_image(out / "contact_sheet.jpg", sheet).name
    _write_text(out / "real_faces.json", json.dumps(payload, indent=1) + "\n")
    md = markdown(payload, sheet_name)
    _write_text(out / "real_faces.md", "# Real faces\n\n" + md)
    print(md)
    if not payload["rows"]:
        raise ValueError(f"no portrait in {args.real} could be evaluated (see {out / 'real_faces.md'})")
    log.info("wrote %s (%.0f s)", ", ".join(sorted(p.name for p in out.iterdir() if not p.name.startswith("."))), payload["seconds"])
    return 0


def cmd_real_clip(args: argparse.Namespace) -> int:
    """A real clip -> clip_<name>.json/.md under --out."""
    from live3dpe.evaluation.clip import markdown, run_clip
    from live3dpe.evaluation.identity import load_dlib_identity
    from live3dpe.evaluation.learned import Unavailable

    if not args.real_clip.is_file():
        raise FileNotFoundError(f"clip {args.real_clip} not found")
    identity = load_dlib_identity()
    if isinstance(identity, Unavailable):
        log.warning("identity not measured: %s", identity.reason)
    prompts = tuple(args.prompts or DEFAULT_PROMPTS)
    payload = run_clip(_load_editor(args), args.real_clip, prompts, identity, args.max_frames, args.id_samples)
    out = args.out or Path("benchmarks/results/real_faces")
    out.mkdir(parents=True, exist_ok=True)
    stem = f"clip_{args.real_clip.stem}"
    _write_text(out / f"{stem}.json", json.dumps(payload, indent=1) + "\n")
    md = markdown(payload)
    _write_text(out / f"{stem}.md", f"# Real clip `{args.real_clip.name}`\n\n" + md)
    print(md)
    log.info("wrote %s and %s (%.0f s)", out / f"{stem}.json", out / f"{stem}.md", payload["seconds"])
    return 0
