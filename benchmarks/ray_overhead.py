"""What running the model on Ray Serve adds to a frame, over the in-process runner (issue 17).

One frame = the model's part of it (paste: the input camera, no geometry; view: a novel camera),
smoothing on (a still face: the stream's averages blend every frame), one stream, three ways in
turns so a busy machine slows all alike: in-process (`ModelRunner`: the encode, fuse + smoothing
and render stages' calls), Ray (`RayRunner.edit`: one round trip, the smoothing kept on the
replica, what the Ray back end's stages do) and Ray per stage (encode, fuse and render as a round
trip each, smoothing in the front end: the back end before it was fused). A local Ray instance on
this machine, loopback. Where a Ray frame's time goes: a second replica of the same deployment
stamps when each `edit` enters and leaves it (wall clock, one machine), splitting the frame into
the way there, the time in the replica (batching, thread hand-over, the model) and the way back.
The overhead of a round is p50(Ray) - p50(in-process) per frame; the result is the median over
rounds, with the load average around each. `@serve.batch` waits 0 ms here, so the figure is the
transport's (a served stream also waits `--batch-wait-ms` for company, as with the in-process
shared runner).

    python benchmarks/ray_overhead.py [--frames 30] [--rounds 3] [--cpus 2]   (results/: --frames 60 --rounds 5)
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import ray
import torch
from ray import serve

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, write_results  # noqa: E402

from live3dpe.model.cameras import Camera  # noqa: E402
from live3dpe.model.editor import Editor  # noqa: E402
from live3dpe.pipeline.ray_backend import EditorDeployment, RayRunner, fast_handle  # noqa: E402
from live3dpe.pipeline.runner import ModelRunner  # noqa: E402
from live3dpe.tracking import PlanesSmoother  # noqa: E402


@serve.deployment(name="echo", ray_actor_options={"num_cpus": 0}, logging_config={"enable_access_log": False})
class Echo:
    """A Serve round trip that does nothing, through a handle like the runner's: its floor."""

    def echo(self, x):
        return x


class StampedEditor(EditorDeployment):
    """The back end's deployment, telling when a request entered and left the replica."""

    async def stamped_edit(self, *request) -> tuple:
        entered = time.time()
        image = await self.edit(*request)
        return image, entered, time.time()


class StampedRunner(RayRunner):
    """`RayRunner` on the stamped replica; `legs` collects (there, in replica, back) in ms."""

    def __init__(self, editor: Editor, handle) -> None:
        super().__init__(editor, handle, timeout_s=60)
        self.legs: list[tuple[float, float, float]] = []

    def _call(self, kind: str, *args, handle=None):
        sent = time.time()
        image, entered, left = super()._call(f"stamped_{kind}", *args, handle=handle)
        self.legs.append((1e3 * (entered - sent), 1e3 * (left - entered), 1e3 * (time.time() - left)))
        return image


def staged(runner: ModelRunner, smoother: PlanesSmoother, crop: np.ndarray, camera: Camera, prompt, view: Camera, geometry: bool) -> None:
    """The encode, fuse (+ smoothing, as `FuseStage`) and render stages' calls for one frame."""
    planes = runner.fuse(runner.encode(crop, camera, geometry), prompt)
    with runner.running():
        planes = smoother(planes, 0.0)
    runner.render(planes, view)


def fused(runner: ModelRunner, smoother: PlanesSmoother, crop: np.ndarray, camera: Camera, prompt, view: Camera, geometry: bool) -> None:
    """The edit stage's one call for one frame."""
    runner.edit(crop, camera, prompt, view, geometry, smoother, 0.0)


def one_round(paths: dict[str, tuple[ModelRunner, Callable]], echo, legs: StampedRunner, editor: Editor, mode: str, frames: int) -> dict:
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (editor.crop_resolution,) * 2 + (3,), dtype=np.uint8)
    camera, prompt = Camera.from_yaw_pitch(0.1, 0.05), editor.encode_prompt(text="golden statue")
    view = camera if mode == "paste" else Camera.from_yaw_pitch(0.35, -0.05)
    geometry = paths["in-process"][0].needs_geometry(mode)
    smoothers = {name: PlanesSmoother() for name in paths}
    load_before = os.getloadavg()[0]
    samples: dict[str, list[float]] = {name: [] for name in paths}
    echoes = []
    legs.legs.clear()
    for i in range(frames + 2):  # two warm-up frames
        for name, (runner, run) in paths.items():
            t = time.perf_counter()
            run(runner, smoothers[name], crop, camera, prompt, view, geometry)
            if i >= 2:
                samples[name].append(1e3 * (time.perf_counter() - t))
        t = time.perf_counter()
        echo.echo.remote(crop).result()
        echoes.append(1e3 * (time.perf_counter() - t))
    frame = {name: float(np.median(s)) for name, s in samples.items()}
    return {
        "frame_ms": frame,
        "overhead_ms": frame["ray"] - frame["in-process"],
        "per_stage_overhead_ms": frame["ray per stage"] - frame["in-process"],
        "echo_ms": float(np.median(echoes[2:])),
        "legs_ms": dict(zip(("there", "in_replica", "back"), np.median(np.array(legs.legs[2:]), 0).tolist())),
        "load_average": [load_before, os.getloadavg()[0]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1, help="the local Ray instance's and the replica's CPUs")
    args = parser.parse_args()
    editor = Editor.load("default")
    remote = RayRunner.start(editor=editor, local_cpus=args.cpus, num_cpus=args.cpus, batch_wait_ms=0.0, timeout_s=60)  # measure, never skip
    # the replica's stages get max(1, cpus // 3) torch threads each: the in-process runner's default
    inline = ModelRunner(editor, cpu_threads=max(1, args.cpus // 3))
    try:
        echo = fast_handle(serve.run(Echo.bind(), name="echo", route_prefix=None), editor)
        stamped = serve.deployment(name="stamped", ray_actor_options={"num_cpus": 0}, logging_config={"enable_access_log": False})(StampedEditor)
        app = stamped.bind("default", "cpu", editor.weights_version, max_batch=8, batch_wait_s=0.0, cpu_threads=inline.cpu_threads)
        legs = StampedRunner(editor, fast_handle(serve.run(app, name="stamped", route_prefix=None), editor))
        paths = {"in-process": (inline, staged), "ray": (remote, fused), "ray per stage": (remote, staged), "ray, stamped": (legs, fused)}
        rounds = {mode: [one_round(paths, echo, legs, editor, mode, args.frames) for _ in range(args.rounds)] for mode in ("paste", "view")}
    finally:
        remote.close()
    rows = []
    for mode, results in rounds.items():
        row = {
            "mode": mode,
            "overhead_ms": statistics.median(r["overhead_ms"] for r in results),
            "in_process_ms": statistics.median(r["frame_ms"]["in-process"] for r in results),
            "ray_ms": statistics.median(r["frame_ms"]["ray"] for r in results),
            "per_stage_overhead_ms": statistics.median(r["per_stage_overhead_ms"] for r in results),
            "echo_ms": statistics.median(r["echo_ms"] for r in results),
            "legs_ms": {k: statistics.median(r["legs_ms"][k] for r in results) for k in ("there", "in_replica", "back")},
            "load_average": [r["load_average"] for r in results],
            "rounds": results,
        }
        rows.append(row)
        print(f"{mode:5s}: +{row['overhead_ms']:.1f} ms a frame ({row['in_process_ms']:.1f} -> {row['ray_ms']:.1f}; "
              f"per stage +{row['per_stage_overhead_ms']:.1f})", flush=True)
    env = environment(torch.device("cpu"))
    payload = {"environment": env, "ray": ray.__version__, "cpus": args.cpus, "frames": args.frames, "rows": rows}
    lines = [
        f"# Ray Serve overhead per frame over the in-process runner, default model, one stream, loopback ({env['device']}, Ray {ray.__version__})",
        "",
        f"Median over {args.rounds} rounds of p50(Ray) - p50(in-process) on {args.frames} frames each (`benchmarks/ray_overhead.py`).",
        "",
        "Smoothing on. Ray Serve: one round trip a frame (`edit`, the smoothing on the replica), as the Ray back end "
        "runs; per stage: encode, fuse and render as a round trip each (the back end before, measured in the same turns); "
        "echo: a Serve round trip doing nothing (same handle options, the crop as payload). Legs: the stamped replica's "
        "`edit` split into the way there, the time in the replica and the way back (medians).",
        "",
        "| mode | overhead / frame | in-process | Ray Serve | legs: there / in replica / back | per stage: overhead / frame | echo | load average (1 min) per round |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['mode']} | {r['overhead_ms']:.1f} ms | {r['in_process_ms']:.1f} ms | {r['ray_ms']:.1f} ms | "
            + " / ".join(f"{r['legs_ms'][k]:.1f}" for k in ("there", "in_replica", "back")) + " ms | "
            + f"{r['per_stage_overhead_ms']:.1f} ms | {r['echo_ms']:.1f} | " + ", ".join(f"{a:.1f}-{b:.1f}" for a, b in r["load_average"]) + " |"
            for r in rows
        ),
        "",
    ]
    write_results("ray_overhead", payload, "\n".join(lines))


if __name__ == "__main__":
    main()
