"""`live3dpe eval`: the quality suite (Table 1 in the synthetic world, temporal stability)."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="measure edit quality, 3D consistency and flicker against synthetic ground truth",
        description="Compare this editor with '2D edit then 3D prior' and reconstruction only on unseen synthetic people, "
        "and measure flicker with and without triplane smoothing. Writes quality.json and quality.md.",
    )
    p.add_argument("--weights", default="default", help="'default', a preset, or a .safetensors checkpoint")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    p.add_argument("--people", type=int, default=3, help="unseen people, one edit style each (default 3)")
    p.add_argument("--yaws", default="-35,-15,0,15,35", metavar="DEG,...", help="evaluation views in degrees, input at 0 (write --yaws=-40,0,40 for negative values)")
    p.add_argument("--styles", default=None, metavar="NAME,...", help="edit styles to cycle through (default bronze,zombie,red_hair; 'all' for every style)")
    p.add_argument("--no-text", dest="text", action="store_false", help="skip the held-out text prompt rows")
    p.add_argument("--frames", type=int, default=20, help="talking-head frames for flicker/jitter (default 20)")
    p.add_argument("--arcface", type=Path, default=None, metavar="MODEL.onnx", help="local insightface recognition model")
    p.add_argument("--clip", type=Path, default=None, metavar="DIR", help="local transformers CLIPModel folder")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for quality.json/.md")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from live3dpe.evaluation.compare import LearnedMetrics
    from live3dpe.evaluation.learned import load_clip, load_identity
    from live3dpe.evaluation.suite import SuiteConfig, markdown, run_suite
    from live3dpe.model.editor import Editor

    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.precision]
    editor = Editor.load(args.weights, device=args.device, dtype=dtype)
    learned = LearnedMetrics(identity=load_identity(args.arcface), clip=load_clip(args.clip))
    cfg = SuiteConfig(
        people=args.people,
        yaws_deg=tuple(float(v) for v in args.yaws.split(",")),
        styles=SuiteConfig.styles if args.styles is None else None if args.styles == "all" else tuple(args.styles.split(",")),
        text=args.text,
        sequence_frames=args.frames,
        seed=args.seed,
    )
    payload = run_suite(editor, cfg, learned)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality.json").write_text(json.dumps(payload, indent=1, allow_nan=True) + "\n")
    md = markdown(payload)
    (args.out / "quality.md").write_text("# Quality (synthetic world)\n\n" + md)
    print(md)
    log.info("wrote %s and %s in %.0f s", args.out / "quality.json", args.out / "quality.md", payload["seconds"])
    return 0
