"""Per-stage latency of the 3DPE editor: encode (E_low/E_high + cross-attention + E_t), volume
rendering, super-resolution and the total, for each preset, precision and execution mode.

Modes: `eager` (modulated SR, the reference path), `folded` (constant style folded into plain
convolutions once at load), `compile` (folded + torch.compile of the encoder and the SR, with
inductor's C++ wrapper on the CPU as `Editor.compile` uses it; the end-to-end compiled editor is
measured by pipeline_latency.py).
Runs on the CPU always and on CUDA when present. Writes benchmarks/results/model_latency.{json,md}.

    python benchmarks/model_latency.py [--presets tiny paper] [--repeats 5] [--compile-presets tiny]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, environment, summary, time_ms, write_results  # noqa: E402

from live3dpe.model.cameras import Camera, generate_rays  # noqa: E402
from live3dpe.model.config import get_preset  # noqa: E402
from live3dpe.model.network import EditorNet  # noqa: E402
from live3dpe.model.renderer import render_rays  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def bench_config(preset: str, device: torch.device, precision: str, mode: str, repeats: int) -> dict:
    """Time each stage of one configuration; autocast for reduced precision (weights stay fp32)."""
    cfg = get_preset(preset)
    torch.manual_seed(0)
    net = EditorNet(cfg).to(device).eval()
    renderer = net.renderer
    renderer.fold_superres(mode != "eager")
    encoder, sr = net.encoder, (renderer.superres_folded or renderer.superres)
    field_of = renderer.field
    if mode == "compile":
        options = {"cpp_wrapper": True} if device.type == "cpu" else None
        encoder = torch.compile(encoder, dynamic=False, options=options)
        sr = torch.compile(sr, dynamic=False, options=options)
    R = cfg.input_resolution
    image = torch.rand(1, 3, R, R, device=device) * 2 - 1
    with torch.inference_mode():
        tokens = net.image_prompt(torch.randn(1, 3, cfg.ref_resolution, cfg.ref_resolution, device=device))
    label = Camera.from_yaw_pitch(0.3, 0.1).label.to(device)
    n = cfg.render.neural_resolution
    autocast = torch.autocast(device.type, dtype=DTYPES[precision], enabled=precision != "fp32")

    with torch.inference_mode(), autocast:
        planes = encoder(image, tokens)
        origins, dirs = generate_rays(label, n)
        rgb, _, _ = render_rays(field_of(planes), origins, dirs, cfg.render, deterministic=True)
        features = rgb.transpose(1, 2).reshape(1, -1, n, n)
        style = renderer.const.reshape(1, -1)

        def run_encode():
            return encoder(image, tokens)

        def run_render():
            return render_rays(field_of(planes), origins, dirs, cfg.render, deterministic=True)

        def run_sr():
            return sr(features, style)

        def run_total():
            p = encoder(image, tokens)
            o, d = generate_rays(label, n)
            c, _, _ = render_rays(field_of(p), o, d, cfg.render, deterministic=True)
            return sr(c.transpose(1, 2).reshape(1, -1, n, n), style)

        warmup = 3 if mode == "compile" else 1
        return {
            "preset": preset,
            "device": device.type,
            "precision": precision,
            "mode": mode,
            "encode_ms": summary(time_ms(run_encode, device, repeats, warmup)),
            "render_ms": summary(time_ms(run_render, device, repeats, warmup)),
            "superres_ms": summary(time_ms(run_sr, device, repeats, warmup)),
            "total_ms": summary(time_ms(run_total, device, repeats, warmup)),
        }


def markdown(env: dict, rows: list[dict]) -> str:
    lines = [
        "# Model latency",
        "",
        f"Device: {env['device']} · torch {env['torch']} · commit {env['commit']} · {env['date']}",
        "",
        "Median (p95) milliseconds per frame, batch 1. `eager` = reference path (modulated SR); "
        "`folded` = constant style folded into the SR convs; `compile` = folded + torch.compile.",
        "",
        "| preset | device | precision | mode | encode | render | super-res | total |",
        "|---|---|---|---|---|---|---|---|",
    ]
    older = sorted({r["commit"] for r in rows if r.get("commit", env["commit"]) != env["commit"]})
    if older:
        lines[-2:-2] = [f"Rows of other presets/devices were measured at commit(s) {', '.join(older)} (column `commit` in the JSON).", ""]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['preset']} | {r['device']} | {r['precision']} | {r['mode']} | unsupported: {r['error']} | | | |")
            continue
        cells = [f"{r[k]['median']:.1f} ({r[k]['p95']:.1f})" for k in ("encode_ms", "render_ms", "superres_ms", "total_ms")]
        lines.append(f"| {r['preset']} | {r['device']} | {r['precision']} | {r['mode']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["tiny", "paper"])
    ap.add_argument("--precisions", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    ap.add_argument("--modes", nargs="+", default=["eager", "folded", "compile"], choices=["eager", "folded", "compile"])
    ap.add_argument("--compile-presets", nargs="*", default=None,
                    help="presets to torch.compile (default: all on CUDA, tiny only on CPU where compiling the paper model takes minutes)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when present")
    ap.add_argument("--name", default="model_latency")
    ap.add_argument("--merge", action="store_true",
                    help="keep the rows of other presets/devices from the existing results file (each row records its commit)")
    args = ap.parse_args(argv)
    devices = [torch.device(d) for d in (args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]))]
    rows = []
    for device in devices:
        compile_presets = args.compile_presets if args.compile_presets is not None else (
            args.presets if device.type == "cuda" else ["tiny"])
        for preset in args.presets:
            for precision in args.precisions:
                for mode in args.modes:
                    if mode == "compile" and preset not in compile_presets:
                        continue
                    try:
                        row = bench_config(preset, device, precision, mode, args.repeats)
                    except (RuntimeError, NotImplementedError) as err:  # e.g. a dtype without kernels on this device
                        row = {"preset": preset, "device": device.type, "precision": precision, "mode": mode,
                               "error": str(err).splitlines()[0][:120]}
                    rows.append(row)
                    print(markdown({"device": "", "torch": "", "commit": "", "date": ""}, [row]).splitlines()[-1], flush=True)
    env = environment(devices[-1])
    env["devices"] = {d.type: environment(d)["device"] for d in devices}
    for row in rows:
        row["commit"] = env["commit"]
    previous = RESULTS / f"{args.name}.json"
    if args.merge and previous.is_file():
        measured = {(r["preset"], r["device"]) for r in rows}
        old = json.loads(previous.read_text())
        kept = [r for r in old["rows"] if (r["preset"], r["device"]) not in measured]
        for r in kept:
            r.setdefault("commit", old["environment"]["commit"])
        rows = kept + rows
    js, md = write_results(args.name, {"environment": env, "rows": rows}, markdown(env, rows))
    print(f"wrote {js} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
