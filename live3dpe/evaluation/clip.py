"""`live3dpe eval --real-clip`: the offline video pipeline on a real clip, per prompt with and without
triplane smoothing: identity kept over sampled frames, flicker and throughput.

Flicker is the flow warping error with the flow taken from the *input* frames (real motion):
each output frame is compared with the next output frame warped back along the input's flow,
inside the face region and where that flow is consistent forwards and backwards. The input
clip's own error under the same flow is the floor (flow errors, lighting, talking). Identity
compares the face of each sampled output frame with the same input frame's face, both cut out
with the same alignment crop (dlib descriptor distance; same person below 0.6).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from live3dpe.evaluation.facestats import at_face_size, face_mask
from live3dpe.evaluation.identity import DlibIdentity
from live3dpe.evaluation.learned import Unavailable
from live3dpe.evaluation.metrics import optical_flow, warp_by_flow

log = logging.getLogger(__name__)

WARMUP_FRAMES = 5


class _ListSource:
    """Decoded frames replayed to the engine, so every run sees exactly the same input."""

    def __init__(self, frames: list) -> None:
        self._frames = iter(frames)

    def recv(self):
        from live3dpe.stream.frame import EndOfStream

        try:
            return next(self._frames)
        except StopIteration:
            raise EndOfStream from None

    def close(self) -> None:
        pass


class _ListSink:
    def __init__(self) -> None:
        self.images: list[np.ndarray] = []

    def send(self, frame) -> None:
        self.images.append(frame.image)

    def close(self, abort: bool = False) -> None:
        pass


def read_clip(path: Path, max_frames: int) -> tuple[list, float]:
    """The first `max_frames` frames of a video (as stream `Frame`s) and its frame rate."""
    from live3dpe.stream.frame import EndOfStream
    from live3dpe.stream.sources import VideoFileSource

    if max_frames < 2:
        raise ValueError(f"--max-frames must be at least 2, got {max_frames}")
    source = VideoFileSource(path)
    frames = []
    try:
        while len(frames) < max_frames:
            frames.append(source.recv())
    except EndOfStream:
        pass
    finally:
        source.close()
    if len(frames) < 2:
        raise ValueError(f"{path} has {len(frames)} decodable frame(s); flicker needs at least 2")
    return frames, source.fps


@dataclass
class Run:
    """One pass of the offline pipeline over the clip."""

    outputs: list[np.ndarray]
    observations: list  # FaceObservation | None per frame
    seconds: float
    faults: dict


def run_pipeline(editor, frames: list, prompt: str | None, smoothing: bool) -> Run:
    """The `live3dpe process` pipeline (pose, encode, fuse, render, paste) over `frames`, in memory."""
    from live3dpe.pipeline.stages import pipeline_engine
    from live3dpe.pipeline.work import FaceWork
    from live3dpe.stream.control import Control
    from live3dpe.stream.stats import Stats

    index = {f.pts: i for i, f in enumerate(frames)}
    observations: list = [None] * len(frames)

    def record(work: FaceWork) -> None:
        observations[index[work.frame.pts]] = work.obs if work.edited else None

    sink, stats = _ListSink(), Stats()
    engine = pipeline_engine(
        _ListSource(frames), sink, editor, live=False, stats=stats, on_output=record,
        control=Control(prompt_text=prompt, smoothing=smoothing),
    )  # fmt: skip
    t0 = time.perf_counter()
    engine.run()
    seconds = time.perf_counter() - t0
    if len(sink.images) != len(frames):
        raise RuntimeError(f"the pipeline returned {len(sink.images)} frames for {len(frames)}")
    return Run(sink.images, observations, seconds, stats.snapshot()["faults"])


def face_region(obs, frame_shape: tuple[int, ...]) -> np.ndarray:
    """The face ellipse of the observation's aligned crop, drawn in frame pixels."""
    mask = face_mask(obs.crop_size).astype(np.uint8)
    H, W = frame_shape[:2]
    flags = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP  # crop_affine maps frame px (destination) -> crop px
    return cv2.warpAffine(mask, np.asarray(obs.crop_affine, np.float64), (W, H), flags=flags).astype(bool)


@dataclass(frozen=True)
class PairFlow:
    """Input flow from frame t to t+1 and where it can be trusted (face region, consistent both ways)."""

    forward: np.ndarray
    valid: np.ndarray


def input_flows(inputs: list[np.ndarray], regions: list[np.ndarray | None], fb_threshold: float = 1.0) -> list[PairFlow | None]:
    """One `PairFlow` per consecutive pair (None where frame t has no face region)."""
    flows: list[PairFlow | None] = []
    for t in range(len(inputs) - 1):
        if regions[t] is None:
            flows.append(None)
            continue
        fwd = optical_flow(inputs[t], inputs[t + 1])
        bwd = optical_flow(inputs[t + 1], inputs[t])
        consistent = np.linalg.norm(fwd + warp_by_flow(bwd, fwd), axis=-1) < fb_threshold
        flows.append(PairFlow(fwd, consistent & regions[t]))
    return flows


def guided_warping_error(frames: list[np.ndarray], flows: list[PairFlow | None]) -> float | None:
    """Mean |frame_t - frame_t+1 warped back along the input flow| over the trusted pixels, in [0, 1]
    units: 0 when the frames move exactly as the input does; flicker and popping raise it."""
    errors = []
    for t, flow in enumerate(flows):
        if flow is None or not flow.valid.any():
            continue
        a = frames[t].astype(np.float32) / 255.0
        b = warp_by_flow(frames[t + 1].astype(np.float32) / 255.0, flow.forward)
        errors.append(float(np.abs(a - b).mean(axis=-1)[flow.valid].mean()))
    return float(np.mean(errors)) if errors else None


def sample_indices(n: int, samples: int) -> list[int]:
    """Up to `samples` frame indices spread evenly over [0, n)."""
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, max(1, min(samples, n)))})


def identity_over_frames(identity: DlibIdentity, inputs: list[np.ndarray], outputs: list[np.ndarray], framing: list, indices: list[int], cache: dict) -> list[float]:
    """Descriptor distance between input and output faces at `indices` (frames with a face in `framing`),
    both cut with the same crop; `cache` keeps the input descriptors across runs."""
    out = []
    for t in indices:
        obs = framing[t]
        if obs is None:
            continue
        if t not in cache:
            cache[t] = identity.descriptor(at_face_size(obs.model_crop(inputs[t], obs.crop_size)))
        face = at_face_size(obs.model_crop(outputs[t], obs.crop_size))
        out.append(identity.between(cache[t], identity.descriptor(face)))
    return out


def run_clip(editor, path: Path, prompts: tuple[str, ...], identity: DlibIdentity | Unavailable, max_frames: int = 60, id_samples: int = 12) -> dict:
    """Every prompt with and without smoothing over the clip's first frames -> JSON payload."""
    if not prompts:
        raise ValueError("the clip check needs at least one prompt")
    from tqdm import tqdm

    from live3dpe.evaluation.real import model_description
    from live3dpe.evaluation.suite import environment

    frames, fps = read_clip(path, max_frames)
    inputs = [f.image for f in frames]
    t0 = time.perf_counter()
    rows, framing, flows, cache = [], None, None, {}
    indices = sample_indices(len(frames), id_samples)
    runs = [(p, s) for p in prompts for s in (False, True)]
    run_pipeline(editor, frames[:WARMUP_FRAMES], prompts[0], True)  # text model, FaceMesh, first kernels: not timed
    for prompt, smoothing in tqdm(runs, desc="clip runs", unit="run", disable=None):
        run = run_pipeline(editor, frames, prompt, smoothing)
        if framing is None:  # the first run fixes the face regions and crops every run is measured in
            framing = run.observations
            flows = input_flows(inputs, [None if o is None else face_region(o, inputs[0].shape) for o in framing])
        row = {
            "prompt": prompt,
            "smoothing": smoothing,
            "fps": len(frames) / run.seconds,
            "face_tracked": float(np.mean([o is not None for o in run.observations])),
            "flicker": guided_warping_error(run.outputs, flows),
            "faults": run.faults,
        }
        if not isinstance(identity, Unavailable):
            d = identity_over_frames(identity, inputs, run.outputs, framing, indices, cache)
            row.update(
                id_frames=len(d),
                id_mean_distance=float(np.mean(d)) if d else None,
                id_kept=float(np.mean([x < identity.threshold for x in d])) if d else None,
            )
        rows.append(row)
        log.info("%s, smoothing %s: %.1f fps", prompt, "on" if smoothing else "off", row["fps"])
    return {
        "benchmark": "real_clip",
        "environment": environment(editor),
        "model": model_description(editor),
        "clip": {"path": str(path), "name": path.name, "frames": len(frames), "fps": fps, "size": list(inputs[0].shape[1::-1])},
        "identity": {"metric": identity.name, "available": not isinstance(identity, Unavailable), "samples": len(indices)}
        | ({"reason": identity.reason} if isinstance(identity, Unavailable) else {}),
        "input_flicker": guided_warping_error(inputs, flows),
        "face_pairs": int(sum(f is not None for f in flows)),
        "rows": rows,
        "seconds": time.perf_counter() - t0,
    }


def markdown(payload: dict) -> str:
    """The clip table (also embedded in RESULTS.md)."""
    env, clip, ident = payload["environment"], payload["clip"], payload["identity"]

    def f(v, fmt: str) -> str:
        return "n/a" if v is None else fmt.format(v)

    lines = [
        f"Device: {env['device']} · precision {env['precision']} · commit {env['commit']} · {env['date']}",
        "",
        f"Clip `{clip['name']}`: first {clip['frames']} frames ({clip['size'][0]}x{clip['size'][1]}, {clip['fps']:.0f} fps), "
        f"`live3dpe process`'s pipeline (paste mode) run offline; identity on {ident['samples']} evenly spaced frames.",
        "",
        "| prompt | smoothing | identity kept ↑ | ID distance ↓ | flicker ↓ | face tracked | pipeline fps |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in payload["rows"]:
        kept = f(r.get("id_kept"), "{:.0%}") if ident["available"] else "unavailable"
        dist = f(r.get("id_mean_distance"), "{:.3f}") if ident["available"] else "unavailable"
        lines.append(
            f"| {r['prompt']} | {'on' if r['smoothing'] else 'off'} | {kept} | {dist} | {f(r['flicker'], '{:.4f}')} | "
            f"{r['face_tracked']:.0%} | {r['fps']:.1f} |"
        )
    lines += [
        f"| input clip (floor) | | | | {f(payload['input_flicker'], '{:.4f}')} | | |",
        "",
        "Flicker: flow warping error (mean absolute difference in [0, 1] units) between each output frame and the next one "
        "warped back along the input clip's optical flow, inside the face region where the flow is consistent both ways "
        f"({payload['face_pairs']} frame pairs); the input clip's own error under the same flow is the floor. Identity: dlib "
        "descriptor distance between the output's and the input's face in the same frame (same person below 0.6; a face "
        "dlib cannot find counts as 1.0). fps: frames through the whole offline pipeline per second, on this device.",
    ]
    if not ident["available"]:
        lines += ["", f"Identity: {ident['reason']}."]
    return "\n".join(lines) + "\n"
