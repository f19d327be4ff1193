"""What running the model on Ray Serve adds to a frame, over the in-process runner (issue 17).

One frame = the encode, fuse and render calls of the pipeline's stages (paste: the input camera,
no geometry; view: a novel camera), one stream, through `RayRunner` (a local Ray instance on this
machine, loopback) and through the in-process `ModelRunner`, in turns so a busy machine slows both
alike. The overhead of a round is p50(Ray) - p50(in-process) per frame and per call; the result
is the median over rounds, with the load average around each. `@serve.batch` waits 0 ms here,
so the figure is the transport's (a served stream also waits `--batch-wait-ms` for company, as
with the in-process shared runner).

    python benchmarks/ray_overhead.py [--frames 30] [--rounds 3] [--cpus 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import ray
import torch
from ray import serve

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, write_results  # noqa: E402

from live3dpe.model.cameras import Camera  # noqa: E402
from live3dpe.model.editor import Editor  # noqa: E402
from live3dpe.pipeline.ray_backend import RayRunner, fast_handle  # noqa: E402
from live3dpe.pipeline.runner import ModelRunner  # noqa: E402

CALLS = ("encode", "fuse", "render")


@serve.deployment(name="echo", ray_actor_options={"num_cpus": 0}, logging_config={"enable_access_log": False})
class Echo:
    """A Serve round trip that does nothing, through a handle like the runner's: its floor."""

    def echo(self, x):
        return x


def frame_ms(runner: ModelRunner, crop: np.ndarray, camera: Camera, prompt, mode: str) -> list[float]:
    """The stages' three calls for one frame: milliseconds each."""
    out, t = [], time.perf_counter()
    features = runner.encode(crop, camera, geometry=runner.needs_geometry(mode))
    out.append(time.perf_counter())
    planes = runner.fuse(features, prompt)
    out.append(time.perf_counter())
    runner.render(planes, camera if mode == "paste" else Camera.from_yaw_pitch(0.35, -0.05))
    out.append(time.perf_counter())
    return [1e3 * (b - a) for a, b in zip([t, *out], out)]


def one_round(runners: dict[str, ModelRunner], echo, editor: Editor, mode: str, frames: int) -> dict:
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (editor.crop_resolution,) * 2 + (3,), dtype=np.uint8)
    camera, prompt = Camera.from_yaw_pitch(0.1, 0.05), editor.encode_prompt(text="golden statue")
    load_before = os.getloadavg()[0]
    samples: dict[str, list[list[float]]] = {name: [] for name in runners}
    echoes = []
    for i in range(frames + 2):  # two warm-up frames
        for name, runner in runners.items():
            ms = frame_ms(runner, crop, camera, prompt, mode)
            if i >= 2:
                samples[name].append(ms)
        t = time.perf_counter()
        echo.echo.remote(crop).result()
        echoes.append(1e3 * (time.perf_counter() - t))
    p50 = {name: np.median(np.array(s), axis=0) for name, s in samples.items()}
    frame = {name: float(np.median(np.array(s).sum(1))) for name, s in samples.items()}
    return {
        "frame_ms": frame,
        "overhead_ms": frame["ray"] - frame["in-process"],
        "call_overhead_ms": dict(zip(CALLS, (p50["ray"] - p50["in-process"]).round(2).tolist())),
        "echo_ms": float(np.median(echoes[2:])),
        "load_average": [load_before, os.getloadavg()[0]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1, help="the local Ray instance's and the replica's CPUs")
    args = parser.parse_args()
    editor = Editor.load("default")
    remote = RayRunner.start(editor=editor, local_cpus=args.cpus, num_cpus=args.cpus, batch_wait_ms=0.0)
    # the replica's stages get max(1, cpus // 3) torch threads each: the in-process runner's default
    inline = ModelRunner(editor, cpu_threads=max(1, args.cpus // 3))
    try:
        echo = fast_handle(serve.run(Echo.bind(), name="echo", route_prefix=None), editor)
        rounds = {mode: [one_round({"in-process": inline, "ray": remote}, echo, editor, mode, args.frames) for _ in range(args.rounds)]
                  for mode in ("paste", "view")}  # fmt: skip
    finally:
        remote.close()
    rows = []
    for mode, results in rounds.items():
        row = {
            "mode": mode,
            "overhead_ms": statistics.median(r["overhead_ms"] for r in results),
            "in_process_ms": statistics.median(r["frame_ms"]["in-process"] for r in results),
            "ray_ms": statistics.median(r["frame_ms"]["ray"] for r in results),
            "call_overhead_ms": {c: statistics.median(r["call_overhead_ms"][c] for r in results) for c in CALLS},
            "echo_ms": statistics.median(r["echo_ms"] for r in results),
            "load_average": [r["load_average"] for r in results],
            "rounds": results,
        }
        rows.append(row)
        print(f"{mode:5s}: +{row['overhead_ms']:.1f} ms a frame ({row['in_process_ms']:.1f} -> {row['ray_ms']:.1f})", flush=True)
    env = environment(torch.device("cpu"))
    payload = {"environment": env, "ray": ray.__version__, "cpus": args.cpus, "frames": args.frames, "rows": rows}
    lines = [
        f"# Ray Serve overhead per frame over the in-process runner, default model, one stream, loopback ({env['device']}, Ray {ray.__version__})",
        "",
        f"Median over {args.rounds} rounds of p50(Ray) - p50(in-process) on {args.frames} frames each (`benchmarks/ray_overhead.py`).",
        "",
        "Per call: what each call adds; echo: a Serve round trip doing nothing (same handle options, the crop as payload).",
        "",
        "| mode | overhead / frame | in-process | Ray Serve | encode | fuse | render | echo | load average (1 min) per round |",
        "|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['mode']} | {r['overhead_ms']:.1f} ms | {r['in_process_ms']:.1f} ms | {r['ray_ms']:.1f} ms | "
            + " | ".join(f"{r['call_overhead_ms'][c]:+.1f}" for c in CALLS)
            + f" | {r['echo_ms']:.1f} | " + ", ".join(f"{a:.1f}-{b:.1f}" for a, b in r["load_average"]) + " |"
            for r in rows
        ),
        "",
    ]
    write_results("ray_overhead", payload, "\n".join(lines))


if __name__ == "__main__":
    main()
