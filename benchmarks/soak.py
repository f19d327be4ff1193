"""Soak test: does a long live session stay flat? Memory (RSS), FPS and capture-to-sink latency
sampled every `--interval` seconds over `--minutes` of each phase:

* `live`: the streaming engine on the synthetic face (camera-paced), the bundled model, a null sink
  (what `live3dpe live --source synthetic` runs, minus the window);
* `serve`: the WebRTC server with one loopback aiortc client streaming the synthetic face (server
  and client share the process, so its RSS covers both).

Each phase runs in a fresh process, so its memory is its own. After a warm-up (caches, allocator,
the first prompt encoding) the figures are: RSS growth from the first to the last minute-ish of
samples (goal < 5 %), and the drift of the per-interval p95 latency between the first and last
fifth of the run (medians of each fifth, goal < 10 %). Writes benchmarks/results/soak.json, .md
and .png. Not a timed test: run it by hand on an otherwise idle machine if you can.

    python benchmarks/soak.py [--minutes 10] [--phases live serve] [--interval 10]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, commit, cpu_name  # noqa: E402

GOAL_RSS_GROWTH_PCT = 5.0
GOAL_P95_DRIFT_PCT = 10.0
PROMPT = "golden statue"


def rss_mb() -> float:
    """Resident set size of this process (Linux /proc), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class Sampler:
    """Every `interval` s: RSS, output FPS and p50/p95 latency of the frames of that interval."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.samples: list[dict] = []
        self.t0 = time.monotonic()
        self._frames = 0
        self._lat = 0
        self._t = self.t0

    def sample(self, stats, extra: dict | None = None) -> dict:
        now = time.monotonic()
        lat = np.asarray(stats.latencies_since(self._lat))
        row = {
            "t_s": round(now - self.t0, 2),
            "rss_mb": round(rss_mb(), 1),
            "fps": round((stats.frames_out - self._frames) / (now - self._t), 2),
            "latency_ms_p50": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
            "latency_ms_p95": round(float(np.percentile(lat, 95)), 1) if lat.size else None,
            "frames_out": stats.frames_out,
            "faults": sum(stats.faults.values()),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            **(extra or {}),
        }
        self._frames, self._lat, self._t = stats.frames_out, stats.latency_count, now
        self.samples.append(row)
        print(json.dumps(row), flush=True)
        return row


def _editor(device: str | None):
    import torch

    from live3dpe.model.editor import Editor

    return Editor.load("default", device=device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _source(args, realtime: bool = True):
    from live3dpe.stream.synthetic import SyntheticFaceSource

    source = SyntheticFaceSource(args.width, args.height, fps=args.fps, realtime=realtime, cycle=int(args.fps * 4))
    source.prerender()  # a camera read is cheap; drawing the synthetic face is not
    return source


def run_live(args) -> list[dict]:
    from live3dpe.pipeline.stages import pipeline_engine
    from live3dpe.stream.control import Control
    from live3dpe.stream.sinks import NullSink

    engine = pipeline_engine(_source(args), NullSink(), _editor(args.device), live=True, control=Control(prompt_text=PROMPT))
    stats = engine.stats
    engine.start()
    sampler = Sampler(args.interval)
    deadline = sampler.t0 + args.minutes * 60
    try:
        while time.monotonic() < deadline and engine.running:
            time.sleep(min(args.interval, max(0.0, deadline - time.monotonic())))
            sampler.sample(stats)
    finally:
        engine.stop()
        engine.join(10)
        engine.source.close()
    return sampler.samples


def run_serve(args) -> list[dict]:
    from live3dpe.pipeline.stages import build_stages
    from live3dpe.webapp.rtc_client import LoopbackClient
    from live3dpe.webapp.server import WebRTCServer, running_app

    editor = _editor(args.device)
    server = WebRTCServer(lambda: build_stages(editor), max_peers=1, initial_control={"prompt_text": PROMPT})

    async def scenario() -> list[dict]:
        async with running_app(server.app) as url, LoopbackClient(url, _source(args)) as client:
            await client.next_frame(timeout=120)
            (session,) = server.sessions.values()
            sampler = Sampler(args.interval)
            deadline = sampler.t0 + args.minutes * 60
            received = client.n_received
            while time.monotonic() < deadline:
                await asyncio.sleep(min(args.interval, max(0.0, deadline - time.monotonic())))
                now_received = client.n_received
                row = sampler.sample(session.stats, {"client_fps": round((now_received - received) / args.interval, 2)})
                received = now_received
                if session.id not in server.sessions:
                    raise RuntimeError(f"the session ended after {row['t_s']} s")
            return sampler.samples

    return asyncio.run(scenario())


def analyse(samples: list[dict], warmup_s: float) -> dict:
    """Growth and drift after the warm-up, as described in the module docstring."""
    steady = [s for s in samples if s["t_s"] >= warmup_s and s["latency_ms_p95"] is not None]
    if len(steady) < 5:
        return {"error": f"only {len(steady)} samples after the {warmup_s:g} s warm-up"}
    k = max(2, len(steady) // 5)
    first, last = steady[:k], steady[-k:]
    rss0, rss1 = statistics.mean(s["rss_mb"] for s in first), statistics.mean(s["rss_mb"] for s in last)
    p95_0 = statistics.median(s["latency_ms_p95"] for s in first)
    p95_1 = statistics.median(s["latency_ms_p95"] for s in last)
    out = {
        "samples": len(steady),
        "window_samples": k,
        "fps_median": statistics.median(s["fps"] for s in steady),
        "latency_ms_p50_median": statistics.median(s["latency_ms_p50"] for s in steady),
        "latency_ms_p95_median": statistics.median(s["latency_ms_p95"] for s in steady),
        "rss_mb_start": round(rss0, 1),
        "rss_mb_end": round(rss1, 1),
        "rss_growth_pct": round(100 * (rss1 - rss0) / rss0, 2),
        "p95_ms_start": p95_0,
        "p95_ms_end": p95_1,
        "p95_drift_pct": round(100 * (p95_1 - p95_0) / p95_0, 2),
        "faults": steady[-1]["faults"],
        "load_avg_1m_median": statistics.median(s["load_avg_1m"] for s in steady),
    }
    out["rss_ok"] = out["rss_growth_pct"] < GOAL_RSS_GROWTH_PCT
    out["p95_ok"] = out["p95_drift_pct"] < GOAL_P95_DRIFT_PCT
    return out


def markdown(result: dict, image: str = "soak.png") -> str:
    """The report section; `image` is the plot's path relative to where the markdown lives."""
    env = result["environment"]
    lines = [
        "## Soak: memory and latency over a long session (`benchmarks/soak.py`)",
        "",
        f"{result['minutes']:g} min per phase, sampled every {result['interval_s']:g} s, after a {result['warmup_s']:g} s warm-up; "
        f"synthetic face {result['size']} at {result['fps']:g} fps, prompt \"{PROMPT}\", bundled model on {env['device']}. "
        f"Goals: RSS growth < {GOAL_RSS_GROWTH_PCT:g} %, p95 latency drift < {GOAL_P95_DRIFT_PCT:g} % "
        "(first vs last fifth of the samples; medians of the per-interval p95).",
        "",
        "| phase | FPS (median) | latency p50 / p95 (ms, median) | RSS start → end (MB) | RSS growth | p95 start → end (ms) | p95 drift | faults | load avg (1 min) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for phase, a in result["phases"].items():
        if "error" in a:
            lines.append(f"| {phase} | {a['error']} |||||||| ")
            continue
        ok = lambda flag: "" if flag else " **(over goal)**"  # noqa: E731
        lines.append(
            f"| {phase} | {a['fps_median']:.1f} | {a['latency_ms_p50_median']:.0f} / {a['latency_ms_p95_median']:.0f} | "
            f"{a['rss_mb_start']:.0f} → {a['rss_mb_end']:.0f} | {a['rss_growth_pct']:+.2f} %{ok(a['rss_ok'])} | "
            f"{a['p95_ms_start']:.0f} → {a['p95_ms_end']:.0f} | {a['p95_drift_pct']:+.1f} %{ok(a['p95_ok'])} | {a['faults']} | {a['load_avg_1m_median']:.1f} |"
        )
    lines += [
        "",
        f"Machine: {env['cpu']} ({env['cores']} logical cores), commit {env['commit']}, {env['date']}. {result['note']}",
        "The serve phase's RSS covers the server and its loopback client (one process); its latency is the server's, "
        "from a frame's arrival off the WebRTC track to its hand-over to the outgoing track.",
        "",
        f"![soak]({image})",
        "",
    ]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    steady_p95 = [1.0]
    for i, (phase, samples) in enumerate(result["samples"].items()):
        colour = f"C{i}"
        t = [s["t_s"] / 60 for s in samples]
        axes[0].plot(t, [s["rss_mb"] for s in samples], color=colour, label=phase)
        axes[1].plot(t, [s["fps"] for s in samples], color=colour, label=phase)
        axes[2].plot(t, [s["latency_ms_p95"] for s in samples], color=colour, label=f"{phase} p95")
        axes[2].plot(t, [s["latency_ms_p50"] for s in samples], "--", color=colour, label=f"{phase} p50")
        steady_p95 += [s["latency_ms_p95"] for s in samples if s["t_s"] >= result["warmup_s"] and s["latency_ms_p95"]]
    axes[2].set_ylim(0, 1.5 * max(steady_p95))  # the warm-up's first frames would flatten the rest
    for ax, label in zip(axes, ("RSS (MB)", "output FPS", "latency (ms)")):
        ax.set_ylabel(label)
        ax.axvline(result["warmup_s"] / 60, color="grey", lw=0.8, ls=":")
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("minutes")
    fig.suptitle(f"soak: {result['minutes']:g} min per phase (dotted: end of warm-up)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds left out of the growth and drift figures")
    p.add_argument("--phases", nargs="+", default=["live", "serve"], choices=["live", "serve"])
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--device", default=None, choices=("cuda", "cpu"))
    p.add_argument("--note", default="", help="a sentence for the report, e.g. what else ran on the machine")
    p.add_argument("--run-phase", choices=["live", "serve"], help=argparse.SUPPRESS)  # internal: one phase, this process
    p.add_argument("--samples-to", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if not (args.minutes > 0 and args.interval > 0 and args.warmup >= 0):
        p.error("--minutes and --interval must be positive, --warmup not negative")

    if args.run_phase:
        samples = (run_live if args.run_phase == "live" else run_serve)(args)
        args.samples_to.write_text(json.dumps(samples))
        return

    result = {
        "minutes": args.minutes, "interval_s": args.interval, "warmup_s": args.warmup, "size": f"{args.width}x{args.height}",
        "fps": args.fps, "note": args.note, "samples": {}, "phases": {},
        "environment": {"cpu": cpu_name(), "cores": os.cpu_count(), "device": args.device or "cpu (cuda when present)",
                        "commit": commit(), "date": time.strftime("%Y-%m-%d %H:%M")},
    }  # fmt: skip
    passthrough = [f"--{k}={v}" for k, v in (("minutes", args.minutes), ("interval", args.interval), ("width", args.width),
                                             ("height", args.height), ("fps", args.fps))]  # fmt: skip
    if args.device:
        passthrough.append(f"--device={args.device}")
    with tempfile.TemporaryDirectory() as tmp:
        for phase in args.phases:
            out = Path(tmp) / f"{phase}.json"
            print(f"soak: {phase} for {args.minutes:g} min", flush=True)
            subprocess.run([sys.executable, __file__, "--run-phase", phase, "--samples-to", str(out), *passthrough], check=True)
            result["samples"][phase] = json.loads(out.read_text())
            result["phases"][phase] = analyse(result["samples"][phase], args.warmup)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(result, RESULTS / "soak.png")
    (RESULTS / "soak.md").write_text(markdown(result))
    print(markdown(result, "results/soak.png"))  # as it reads from benchmarks/RESULTS.md


if __name__ == "__main__":
    main()
