"""The whole quality suite (`live3dpe eval`): Table 1 comparison plus temporal stability, as one
JSON payload and a Markdown summary. The defaults keep a run under ~10 minutes on 2 CPU cores.
"""
from __future__ import annotations

import dataclasses
import math
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from live3dpe.evaluation.compare import METHODS, LearnedMetrics, run_comparison, summarize
from live3dpe.evaluation.temporal import run_sequence
from live3dpe.evaluation.world import make_cases
from live3dpe.model.editor import Editor


@dataclass(frozen=True)
class SuiteConfig:
    people: int = 3
    yaws_deg: tuple[float, ...] = (-35.0, -15.0, 0.0, 15.0, 35.0)
    # person i gets styles[i % len]: one material, one skin + geometry, one hair-only edit
    styles: tuple[str, ...] | None = ("bronze", "zombie", "red_hair")
    text: bool = True  # also the held-out text phrasing, when the editor has a text back-end
    sequence_frames: int = 20
    sequence_style: str = "golden_statue"
    supersample: int = 3
    seed: int = 0


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        name = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU {name} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def environment(editor: Editor) -> dict:
    """Where and with what a result was measured: every evaluation payload stamps these fields."""
    return {
        "device": device_description(editor.device),
        "precision": str(editor.dtype).replace("torch.", ""),
        "torch": torch.__version__,
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def run_suite(editor: Editor, cfg: SuiteConfig, learned: LearnedMetrics) -> dict:
    """Run everything -> the payload `markdown` and the report read."""
    t0 = time.perf_counter()
    yaws = tuple(math.radians(y) for y in cfg.yaws_deg)
    cases = make_cases(cfg.people, yaws, editor.crop_resolution, editor.output_resolution, cfg.styles, cfg.seed, cfg.supersample)
    records = run_comparison(editor, cases, learned, text=cfg.text)
    sequence = run_sequence(editor, cfg.sequence_style, cfg.sequence_frames, seed=cfg.seed, supersample=cfg.supersample)
    trained = editor.meta is not None
    return {
        "benchmark": "quality",
        "environment": environment(editor),
        "model": {"preset": editor.config.name, "weights": editor.weights_version, "trained": trained},
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()},
        "unavailable": learned.notes(),
        "cases": [{"person": c.person, "style": c.style, "phrase": c.phrase} for c in cases],
        "comparison": summarize(records),
        "records": records,
        "sequence": sequence,
        "seconds": time.perf_counter() - t0,
    }


_LABELS = {
    "3dpe_image": "3DPE (image prompt)",
    "3dpe_text": "3DPE (held-out text)",
    "2d_then_3d": "2D edit → 3D prior",
    "reconstruction": "reconstruction only",
    "ground_truth": "ground truth (ceiling)",
}
_COLUMNS = (
    ("psnr", "PSNR ↑", "{:.2f}"),
    ("psnr_face", "PSNR face ↑", "{:.2f}"),
    ("ssim", "SSIM ↑", "{:.3f}"),
    ("depth_abs", "depth err ↓", "{:.4f}"),
    ("consistency", "multi-view PSNR ↑", "{:.2f}"),
    ("identity", "ID (ArcFace) ↑", "{:.3f}"),
    ("clip_reference", "CLIP ref ↑", "{:.3f}"),
    ("clip_truth", "CLIP truth ↑", "{:.3f}"),
    ("edit_ms", "ms / edit", "{:.0f}"),
)


def _cell(value: float | None, fmt: str, note: str | None) -> str:
    if value is None:
        return "n/a" if note is None else "unavailable"
    return "inf" if math.isinf(value) else fmt.format(value)


def markdown(payload: dict) -> str:
    """Table 1 and the stability table as Markdown (also embedded in RESULTS.md)."""
    env, model, notes = payload["environment"], payload["model"], payload["unavailable"]
    table = payload["comparison"]["table"]
    cfg = payload["config"]
    lines = [
        f"Device: {env['device']} · precision {env['precision']} · commit {env['commit']} · {env['date']}",
        "",
        f"Model: preset `{model['preset']}`, weights `{model['weights'][:16]}`" + ("" if model["trained"] else " — **random weights: numbers show the harness works, not the method**"),
        "",
        f"{len(payload['cases'])} unseen people × {len(cfg['yaws_deg'])} views (yaw {', '.join(f'{y:g}' for y in cfg['yaws_deg'])}°), input at yaw 0; "
        f"styles {', '.join(sorted({c['style'] for c in payload['cases']}))}.",
        "",
        "| method | " + " | ".join(c[1] for c in _COLUMNS) + " |",
        "|---|" + "---|" * len(_COLUMNS),
    ]
    for m in METHODS:
        if m in table:
            lines.append(f"| {_LABELS[m]} | " + " | ".join(_cell(table[m][k], f, notes.get(k)) for k, _, f in _COLUMNS) + " |")
    for metric, reason in sorted(notes.items()):
        lines.append(f"\n`{metric}`: {reason}.")
    lines += [
        "",
        "PSNR/SSIM/depth: against the edited person rendered at each view. Multi-view PSNR: each view warped into the input view "
        "by the method's own depth, inside the face (no occlusion test, so even the truth loses a little at wide angles; a flat, "
        "view-independent image is trivially consistent, so read it next to PSNR). ms / edit: encode + one render on this device; for `2D edit → 3D prior` "
        "it excludes the 2D edit itself (here the ground truth; InstructPix2Pix in the paper), which this suite cannot time.",
    ]
    seq = payload["sequence"]
    jit = seq["pose_jitter_deg"]

    def f(v: float | None, fmt: str = "{:.4f}") -> str:
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)

    lines += [
        "",
        f"Talking head, {seq['frames']} frames at {seq['fps']:g} fps, style `{seq['style']}`:",
        "",
        "| clip | flicker (flow warping error) ↓ | PSNR vs truth ↑ |",
        "|---|---|---|",
        f"| per-frame edit | {f(seq['flicker']['raw'])} | {f(seq['psnr_vs_truth']['raw'], '{:.2f}')} |",
        f"| + triplane smoothing | {f(seq['flicker']['smoothed'])} | {f(seq['psnr_vs_truth']['smoothed'], '{:.2f}')} |",
        f"| ground truth | {f(seq['flicker']['ground_truth'])} | inf |",
        "",
        f"Pose jitter (RMS 2nd difference of yaw/pitch, degrees; face found in {seq['pose_detected']:.0%} of frames): "
        f"ground truth {f(jit['ground_truth'])}, FaceMesh estimate {f(jit['estimated'])}, One-Euro filtered {f(jit['filtered'])}.",
    ]
    return "\n".join(lines) + "\n"
