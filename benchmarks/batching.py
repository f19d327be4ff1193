"""Per-sample cost of the live model path when B streams' frames run as one batch (issue 17).

One step = what the pipeline's encode, fuse and render stages do for a frame (stream/stages.py):
preprocess the 256-px aligned crop, `encode_features` (geometry only in view mode), `fuse` with
the stream's prompt, `render_image` at the input camera (paste) or a novel one (view),
`postprocess`. Batch B runs B different crops, cameras and prompts as one call of each; batch 1
is the unbatched path. Torch threads default to the pipeline's per-stage count. Each step is timed
in wall-clock and in this process's CPU time: on a shared machine the CPU time per sample is the
steadier figure of what a batch saves (with one torch thread it is the step's own work).

    python benchmarks/batching.py [--batches 1 2 4 8] [--repeats 5] [--compile dynamic|static] [--threads N]

--compile dynamic: `Editor.compile(batched=True)` (one dynamic-batch graph for all batches >= 2);
static: `Editor.compile()`, whose static graphs recompile for each new batch size (in the untimed
warm-up): batch buckets. The batch sizes are timed in turns, so a busy machine slows them alike.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, write_results  # noqa: E402

from live3dpe.model.cameras import Camera  # noqa: E402
from live3dpe.model.editor import Editor  # noqa: E402
from live3dpe.pipeline.runner import pipeline_torch_threads  # noqa: E402

PROMPTS = ("a smiling elf", "a golden statue", "a zombie", "a marble bust")


def step(editor: Editor, crops: np.ndarray, cameras: list[Camera], prompts: list, view: Camera | None) -> np.ndarray:
    """One frame of B streams through the model stages, batched."""
    features = editor.encode_features(editor.preprocess(crops), cameras, geometry=view is not None)
    planes = editor.fuse(features, prompts)
    return editor.postprocess(editor.render_image(planes, cameras if view is None else [view] * len(cameras)))


def inputs(editor: Editor, batch: int, mode: str) -> tuple:
    """B streams' frames: their own crops, cameras and prompts."""
    rng = np.random.default_rng(batch)
    r = editor.crop_resolution
    crops = rng.integers(0, 256, (batch, r, r, 3), dtype=np.uint8)
    cameras = [Camera.from_yaw_pitch(0.05 * i, -0.03 * i) for i in range(batch)]
    prompts = [editor.encode_prompt(text=PROMPTS[i % len(PROMPTS)]) for i in range(batch)]
    return crops, cameras, prompts, Camera.from_yaw_pitch(0.4, 0.1) if mode == "view" else None


def per_sample_ms(editor: Editor, batches: list[int], modes: list[str], repeats: int) -> dict[tuple[str, int], list[tuple[float, float]]]:
    """(wall, CPU) milliseconds per sample of each (mode, batch), timed in turns within each mode,
    the order of the sizes rotating from turn to turn. (With every mode in one turn, paste at
    batch 1 always ran right after view at batch 8 and took twice its time: 9.8 vs 5.1 ms.)"""
    cases = {(mode, b): inputs(editor, b, mode) for mode in modes for b in batches}
    for args in cases.values():  # warm-up (a compiled editor's view path compiles on first use)
        step(editor, *args)
        step(editor, *args)
    out: dict[tuple[str, int], list[tuple[float, float]]] = {case: [] for case in cases}
    for mode in modes:  # a view batch's large tensors evict the caches a paste step would find warm
        for turn in range(repeats):
            for b in batches[turn % len(batches) :] + batches[: turn % len(batches)]:  # each size after each other alike
                wall, cpu = time.perf_counter(), time.process_time()
                step(editor, *cases[mode, b])
                out[mode, b].append(((time.perf_counter() - wall) * 1e3 / b, (time.process_time() - cpu) * 1e3 / b))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--modes", nargs="+", default=["paste", "view"], choices=["paste", "view"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=pipeline_torch_threads())
    parser.add_argument("--compile", choices=["dynamic", "static"], help="compile the editor first (see above)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    editor = Editor.load("default")
    compile_s = None
    if args.compile:
        t0 = time.perf_counter()
        editor.compile(threads=args.threads, batched=args.compile == "dynamic")
        compile_s = time.perf_counter() - t0
    times = per_sample_ms(editor, args.batches, args.modes, args.repeats)
    rows = []
    for mode in args.modes:
        base_wall, base_cpu = (statistics.median(t[k] for t in times[mode, args.batches[0]]) for k in (0, 1))
        for batch in args.batches:
            wall, cpu = (statistics.median(t[k] for t in times[mode, batch]) for k in (0, 1))
            rows.append({"mode": mode, "batch": batch, "wall_ms": wall, "cpu_ms": cpu, "wall_gain": base_wall / wall, "cpu_gain": base_cpu / cpu, "samples": times[mode, batch]})
            print(f"{mode:5s} B={batch}: wall {wall:7.2f} ms/sample x{base_wall / wall:.2f}   CPU {cpu:7.2f} ms/sample x{base_cpu / cpu:.2f}", flush=True)
    label = f"compiled-{args.compile}" if args.compile else "eager"
    payload = {"environment": environment(torch.device("cpu")), "threads": args.threads, "execution": label, "compile_s": compile_s, "rows": rows}
    lines = [
        f"# Batched model step, default model, {label}, {args.threads} torch thread(s), median of {args.repeats} ({payload['environment']['device']})",
        "",
        "| mode | batch | wall ms / sample | vs batch 1 | CPU ms / sample | vs batch 1 |",
        "|---|---|---|---|---|---|",
        *(f"| {r['mode']} | {r['batch']} | {r['wall_ms']:.2f} | {r['wall_gain']:.2f}x | {r['cpu_ms']:.2f} | {r['cpu_gain']:.2f}x |" for r in rows),
        "",
    ]
    if compile_s is not None:
        lines.append(f"Compile and warm-up: {compile_s:.0f} s.\n")
    write_results(f"batching_{label}_{args.threads}t", payload, "\n".join(lines))


if __name__ == "__main__":
    main()
