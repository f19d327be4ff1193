"""Regenerate benchmarks/RESULTS.md and its PNG plots from the result files in benchmarks/results/.

Reads what the benchmarks wrote (quality.json from `live3dpe eval`, real_faces/ from
`live3dpe eval --real` and `--real-clip`, model_latency.json, pipeline_latency.json,
pose_latency.json, training_*.json / customization*.json) and says "not yet measured" for
anything absent. Every figure is stamped with the device, precision and commit of the run
that produced it. The real-face files need portraits (and clips) this repository does not
carry, so they are measured separately: `live3dpe eval --real DIR [--references DIR]` and
`live3dpe eval --real-clip CLIP.mp4` (a few minutes each on 2 CPU cores).

    python benchmarks/report.py                   # report only (seconds)
    python benchmarks/report.py --run-quality     # + the quality suite (~5-10 min on 2 CPU cores)
    python benchmarks/report.py --run-latency     # + re-run the latency benchmarks (GPU too when present)
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import commit  # noqa: E402

RESULTS = HERE / "results"
REPORT = HERE / "RESULTS.md"
REAL_FACES = "real_faces"  # `live3dpe eval --real` / `--real-clip` write here (their --out default)
LATENCY_SCRIPTS = ("model_latency.py", "pipeline_latency.py", "pose_latency.py")
NOT_MEASURED = "_Not yet measured._"
REAL_NOT_MEASURED = (  # needs portraits the repository does not carry, so it says how to measure
    "_Not yet measured: run `live3dpe eval --real PORTRAITS_DIR [--references DIR]` "
    "(and `live3dpe eval --real-clip CLIP.mp4`), then this script._"
)
X_KEYS = ("time_s", "seconds", "elapsed_s", "step", "steps", "iteration", "epoch")  # first present = x axis
METHOD_STYLE = {
    "3dpe_image": ("3DPE (image prompt)", "C0", "-"),
    "3dpe_text": ("3DPE (held-out text)", "C1", "-"),
    "2d_then_3d": ("2D edit → 3D prior", "C2", "--"),
    "reconstruction": ("reconstruction only", "C3", ":"),
    "ground_truth": ("ground truth", "k", "-."),
}


def load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def md_body(name: str) -> str | None:
    """A benchmark's own Markdown without its top heading (its tables are the report's)."""
    path = RESULTS / name
    if not path.is_file():
        return None
    lines = path.read_text().splitlines()
    lines = lines[1:] if lines and lines[0].startswith("# ") else lines
    return "\n".join("#" + ln if ln.startswith("## ") else ln for ln in lines).strip()  # under the report's "##"


def stamp(fig, device: str, precision: str, commit: str) -> None:
    fig.text(0.01, 0.005, f"device: {device} · precision: {precision} · commit: {commit}", fontsize=7, color="0.35")


def save(fig, name: str) -> str:
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(RESULTS / name, dpi=110)
    plt.close(fig)
    return name


# ----------------------------------------------------------------------------------------- plots
def plot_model_latency(data: dict) -> str | None:
    rows = [r for r in data.get("rows", []) if "error" not in r]
    if not rows:
        return None
    labels = [f"{r['preset']}/{r['device']}\n{r['precision']}/{r['mode']}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(rows) + 2), 4))
    bottom = [0.0] * len(rows)
    for key, name in (("encode_ms", "encode"), ("render_ms", "volume render"), ("superres_ms", "super-res")):
        vals = [r[key]["median"] for r in rows]
        ax.bar(range(len(rows)), vals, bottom=bottom, label=name)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(range(len(rows)), labels, fontsize=7, rotation=45, ha="right")
    ax.set_ylabel("median ms per frame (batch 1)")
    ax.set_yscale("log")
    ax.set_title("Model latency per stage")
    ax.legend(fontsize=8)
    env = data.get("environment", {})
    devices = env.get("devices") or {"": env.get("device", "?")}
    stamp(fig, "; ".join(f"{k} {v}".strip() for k, v in devices.items()), "per bar", env.get("commit", "?"))
    return save(fig, "model_latency.png")


def plot_fps(data: dict) -> str | None:
    rows = data.get("results", [])
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for mode in dict.fromkeys(r["mode"] for r in rows):
        sel = [r for r in rows if r["mode"] == mode]
        sizes = [r["size"] for r in sel]
        ax.plot(sizes, [r["engine_fps"] for r in sel], "o-", label=f"threaded engine ({mode})")
        ax.plot(sizes, [r["naive_fps"] for r in sel], "s--", label=f"naive sequential loop ({mode})")
    ax.set_xlabel("camera resolution")
    ax.set_ylabel("sustained FPS")
    ax.set_title(f"FPS vs resolution (preset {data.get('preset', '?')})")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    stamp(fig, data.get("device", "?"), data.get("precision", "?"), data.get("commit", "?"))
    return save(fig, "fps_vs_resolution.png")


def plot_quality_vs_view(quality: dict) -> str:
    by_yaw = quality["comparison"]["by_yaw"]
    panels = (("psnr_face", "PSNR inside the face (dB) ↑"), ("ssim", "SSIM ↑"), ("consistency", "multi-view PSNR (dB) ↑"))
    fig, axes = plt.subplots(1, len(panels), figsize=(13, 3.8))
    for ax, (key, title) in zip(axes, panels):
        for method, per_yaw in by_yaw.items():
            pts = [(float(y), v[key]) for y, v in per_yaw.items() if v.get(key) is not None and math.isfinite(v[key])]
            if pts:
                label, colour, line = METHOD_STYLE.get(method, (method, None, "-"))
                ax.plot(*zip(*sorted(pts)), line, marker="o", color=colour, label=label)
        ax.set_xlabel("view yaw (degrees; input at 0)")
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=7)
    env = quality["environment"]
    stamp(fig, env["device"], env["precision"], env["commit"])
    return save(fig, "quality_vs_view.png")


def plot_flicker(quality: dict) -> str:
    seq = quality["sequence"]
    names = ("raw", "smoothed", "ground_truth")
    labels = ("per-frame edit", "+ triplane smoothing", "ground truth")
    vals = [seq["flicker"][n] for n in names]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.bar(labels, [v if v is not None and math.isfinite(v) else 0 for v in vals], color=("C0", "C2", "0.5"))
    ax.set_ylabel("flow warping error ↓ ([0, 1] units)")
    ax.set_title(f"Flicker, talking head ({seq['frames']} frames, {seq['style']})", fontsize=10)
    env = quality["environment"]
    stamp(fig, env["device"], env["precision"], env["commit"])
    return save(fig, "flicker.png")


def find_curves(obj, path: str = "") -> list[tuple[str, str, list[dict]]]:
    """(name, x key, records) for every list of records with a step/time key, anywhere in `obj`."""
    if isinstance(obj, dict):
        return [c for k, v in obj.items() for c in find_curves(v, f"{path}/{k}" if path else str(k))]
    if isinstance(obj, list) and len(obj) >= 2 and all(isinstance(r, dict) for r in obj):
        x = next((k for k in X_KEYS if all(isinstance(r.get(k), (int, float)) for r in obj)), None)
        return [(path or "curve", x, obj)] if x else []
    return []


def plot_adaptation(files: list[Path]) -> tuple[str | None, list[str]]:
    """One panel per (file, metric), one line per curve (e.g. per number of customization pairs),
    against time when the records have it; returns (png, notes on what each file held)."""
    panels, notes = [], []
    for f in files:
        data = json.loads(f.read_text())
        found = find_curves(data)
        notes.append(f"`{f.name}`: {len(found)} curve(s)" + ("" if found else " (no list of records with a step/time key)"))
        env = data.get("environment", data) if isinstance(data, dict) else {}
        metrics = sorted({k for _, _, recs in found for k, v in recs[0].items() if k not in X_KEYS and isinstance(v, (int, float))})
        panels += [(f.stem, m, found, env) for m in metrics]
    if not panels:
        return None, notes
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.6), squeeze=False)
    for ax, (stem, metric, curves, _) in zip(axes[0], panels):
        for name, x, recs in curves:
            if metric in recs[0]:
                ax.plot([r[x] for r in recs], [r.get(metric, math.nan) for r in recs], marker=".", label=name)
        ax.set_xlabel(curves[0][1])
        ax.set_title(f"{stem}: {metric}", fontsize=9)
        ax.legend(fontsize=7)
    env = panels[0][3]
    stamp(fig, str(env.get("device", "not recorded")), str(env.get("precision", "not recorded")), str(env.get("commit", "not recorded")))
    return save(fig, "adaptation.png"), notes


# ----------------------------------------------------------------------------------------- report
def section(title: str, body: str | None, image: str | None = None) -> list[str]:
    out = [f"## {title}", "", body or NOT_MEASURED, ""]
    if image:
        out += [f"![{title}](results/{image})", ""]
    return out


def real_faces_section() -> list[str]:
    """The real-portrait table with its contact sheet, then one table per real clip."""
    sheet = f"{REAL_FACES}/contact_sheet.jpg"
    lines = section(
        "Real faces: identity, colour direction, sharpness (`live3dpe eval --real`)",
        md_body(f"{REAL_FACES}/real_faces.md") or REAL_NOT_MEASURED,
        sheet if (RESULTS / sheet).is_file() else None,
    )
    for clip in sorted((RESULTS / REAL_FACES).glob("clip_*.md")):
        title = clip.read_text().splitlines()[0].lstrip("# ").strip()
        lines += [f"### {title} (`live3dpe eval --real-clip`)", "", md_body(f"{REAL_FACES}/{clip.name}"), ""]
    return lines


def build_report() -> str:
    quality = load("quality.json")
    model = load("model_latency.json")
    pipeline = load("pipeline_latency.json")
    lines = [
        "# Results",
        "",
        f"Generated by `python benchmarks/report.py` at commit {commit()} from the files in `benchmarks/results/`; "
        "each table and figure carries the device, precision and commit of the run that measured it.",
        "",
    ]
    q_png = plot_quality_vs_view(quality) if quality else None
    lines += section("Edit quality, identity, 3D consistency and time (paper Table 1, synthetic world)", md_body("quality.md"), q_png)
    if quality:
        lines += [f"![flicker](results/{plot_flicker(quality)})", ""]
    lines += real_faces_section()
    lines += section("Real faces on worse photos: soft, noisy, dark, JPEG, webcam", md_body("photo_robustness.md"))
    lines += section("Editor A/B: old design vs each change (issue 14)", md_body("ab_editor/ab_editor.md"))
    ceiling = md_body("novel_view_ceiling.md")  # its contact sheet is named relative to results/
    lines += section("What limits novel views: geometry, fill and background swapped for the truth", ceiling, "novel_view_ceiling.png" if ceiling else None)
    lines += section("Model latency per stage", md_body("model_latency.md"), plot_model_latency(model) if model else None)
    gpu_rows = [r for r in (model or {}).get("rows", []) if r.get("device") == "cuda"]
    if model and not gpu_rows:
        lines += ["GPU: not yet measured (no GPU was available to the run above).", ""]
    lines += section("Live pipeline: FPS vs resolution", md_body("pipeline_latency.md"), plot_fps(pipeline) if pipeline else None)
    lines += section("Pipeline layer refactor: old vs new commit (issue 15)", md_body("pipeline_refactor_ab.md"))
    lines += section("Pose stage latency", md_body("pose_latency.md"))
    scale = [body.replace(f"]({stem}.png)", f"](results/{stem}.png)") for stem in ("serve_scale", "serve_scale_60fps", "serve_scale_view") if (body := md_body(f"{stem}.md"))]
    lines += section("Serving many peers: per-peer model calls vs one shared batching runner (issue 17)", "\n\n".join(scale) or None)
    batching = [f"**Eager, {t} torch thread(s){' (as each pipeline stage on 2 cores)' if t == 1 else ''}.**\n\n{b}"
                for t in (1, 2) if (b := md_body(f"batching_eager_{t}t.md"))]  # fmt: skip
    lines += section("Model batching: time per sample by batch size", "\n\n".join(batching) or None)
    lines += section("Ray Serve backend: overhead per frame", md_body("ray_overhead.md"))
    soak = md_body("soak.md")  # its plot link is relative to results/
    lines += section("Soak: memory and latency over a long session", soak and soak.replace("](soak.png)", "](results/soak.png)"))
    files = sorted(RESULTS.glob("training_*.json")) + sorted(RESULTS.glob("customization*.json"))
    png, notes = plot_adaptation(files)
    tables = [b for b in (md_body("training_quality.md"), md_body("training_customization.md")) if b]
    body = "\n\n".join(tables + ["\n".join(f"- {n}" for n in notes)]) if notes else None
    lines += section("Training and adaptation speed (paper Table 2)", body, png)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-quality", action="store_true", help="run `live3dpe eval` first")
    ap.add_argument("--quality-args", default="", help='extra `live3dpe eval` arguments, e.g. "--people 8 --frames 48"')
    ap.add_argument("--run-latency", action="store_true", help="re-run the latency benchmarks first")
    args = ap.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.run_latency:
        for script in LATENCY_SCRIPTS:
            subprocess.run([sys.executable, str(HERE / script)], check=True, cwd=HERE.parent)
    if args.run_quality:
        cmd = [sys.executable, "-m", "live3dpe.cli", "eval", "--out", str(RESULTS), *shlex.split(args.quality_args)]
        subprocess.run(cmd, check=True, cwd=HERE.parent)
    REPORT.write_text(build_report())
    print(f"wrote {REPORT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
