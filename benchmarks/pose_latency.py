"""Per-frame CPU latency of the pose stage: FaceMesh landmarks, head pose + camera, aligned crop.

A video-like sequence (the public-domain skimage astronaut, drifting and turning slightly in
the frame) runs through `FacePoseEstimator` in video mode at 640x480 and 1280x720, with
max_faces 4 (the default: mediapipe keeps running its detector while fewer faces are
tracked) and 1 (the detector only runs until the face is found; later frames track the ROI
from the previous landmarks). Writes benchmarks/results/pose_latency.{json,md}.

    python benchmarks/pose_latency.py [--frames 120]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from live3dpe.pose import FacePoseEstimator
from live3dpe.pose.align import warp_crop
from live3dpe.pose.estimator import observe

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def frames(width: int, height: int, n: int) -> list[np.ndarray]:
    """A face of a third of the frame height, drifting and rotating a little each frame."""
    from skimage.data import astronaut

    face = astronaut()[0:300, 80:360]
    size = height // 2
    face = cv2.resize(face, (size * face.shape[1] // face.shape[0], size))
    out = []
    for i in range(n):
        canvas = np.full((height, width, 3), 90, np.uint8)
        x = width // 2 - face.shape[1] // 2 + int(20 * np.sin(i / 15))
        y = height // 2 - size // 2 + int(10 * np.cos(i / 20))
        canvas[y : y + size, x : x + face.shape[1]] = face
        M = cv2.getRotationMatrix2D((width / 2, height / 2), 5 * np.sin(i / 10), 1.0)
        out.append(cv2.warpAffine(canvas, M, (width, height), borderMode=cv2.BORDER_REPLICATE))
    return out


def stats(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"median_ms": float(np.median(a)), "p95_ms": float(np.percentile(a, 95)), "n": int(a.size)}


def run(width: int, height: int, max_faces: int, n: int, warmup: int = 10) -> dict:
    seq = frames(width, height, n + warmup)
    lm_ms, pose_ms, crop_ms, total_ms, found = [], [], [], [], 0
    with FacePoseEstimator(max_faces=max_faces) as est:
        det = est._detector  # timed separately from the pose maths
        for i, frame in enumerate(seq):
            t0 = time.perf_counter()
            faces = det(frame)
            t1 = time.perf_counter()
            obs = observe(faces[0], (width, height)) if len(faces) else None
            t2 = time.perf_counter()
            if obs is not None:
                warp_crop(frame, obs.crop_affine, obs.crop_size)
            t3 = time.perf_counter()
            if i >= warmup:
                found += obs is not None
                lm_ms.append((t1 - t0) * 1e3)
                pose_ms.append((t2 - t1) * 1e3)
                crop_ms.append((t3 - t2) * 1e3)
                total_ms.append((t3 - t0) * 1e3)
    return {
        "resolution": f"{width}x{height}",
        "max_faces": max_faces,
        "detected_fraction": found / n,
        "landmarks": stats(lm_ms),
        "pose_camera": stats(pose_ms),
        "crop_512": stats(crop_ms),
        "total": stats(total_ms),
    }


def markdown(report: dict) -> str:
    lines = [
        "# Pose stage latency (CPU)",
        "",
        f"CPU: {report['cpu']} ({report['cpu_count']} logical cores, torch threads {report['torch_threads']}); "
        f"torch {report['torch']}, mediapipe {report['mediapipe']}, opencv {report['opencv']}; commit {report['commit']}; "
        f"1-min load average at the end {report['load_average_1min']:.1f} (other jobs share the CPU when it exceeds the core count).",
        "",
        "Per frame, video mode, milliseconds (median / p95). Goal: total <= 8 ms at 640x480.",
        "",
        "| resolution | max_faces | landmarks | pose + camera | crop 512 | total | detected |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["runs"]:
        cells = [f"{r[k]['median_ms']:.2f} / {r[k]['p95_ms']:.2f}" for k in ("landmarks", "pose_camera", "crop_512", "total")]
        lines.append(f"| {r['resolution']} | {r['max_faces']} | " + " | ".join(cells) + f" | {r['detected_fraction']:.0%} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=120)
    args = parser.parse_args()
    import mediapipe

    runs = [run(w, h, mf, args.frames) for (w, h) in ((640, 480), (1280, 720)) for mf in (4, 1)]
    report = {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],
        "torch": torch.__version__,
        "mediapipe": mediapipe.__version__,
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "commit": commit(),
        "runs": runs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pose_latency.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "pose_latency.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
