"""Per-frame face observation: landmarks -> head pose -> model camera -> aligned crop.

`observe` is the pure part (landmarks in, observations out) so it can be tested on known
landmarks; `FacePoseEstimator` adds mediapipe and keeps the chosen face across frames.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from live3dpe.pose.align import alignment_affine, as_rgb, invert_affine
from live3dpe.pose.canonical import five_points
from live3dpe.pose.headpose import default_focal, fit_head_pose, head_pose_to_camera

Box = tuple[float, float, float, float]
RESIDUAL_SCALE_CM = 2.0  # fit residual at which the score has dropped to 1/e


@dataclass
class FaceObservation:
    """One face in one frame, ready for the model and the compositor.

    landmarks float32[478, 3] (x, y frame px with pixel centres at integers, z relative);
    bbox (x0, y0, x1, y1) px of the landmarks; score in (0, 1], how well the landmarks fit a
    rigid face; rotation float[3, 3] and translation float[3] cm: the head in the (assumed)
    camera's OpenCV space; yaw/pitch/roll degrees (the model camera's yaw/pitch, the face's
    counter-clockwise in-plane angle; see `headpose`); camera float32[25], the model's label;
    crop_affine float32[2, 3] frame px -> crop px for a `crop_size` crop, crop_inverse its
    inverse; all_faces: bboxes of every face found in the frame; frame_size (W, H);
    motion: how fast the face moves (face sizes per second), set by `tracking`.
    """

    landmarks: np.ndarray
    bbox: Box
    score: float
    rotation: np.ndarray
    translation: np.ndarray
    yaw: float
    pitch: float
    roll: float
    camera: np.ndarray
    crop_affine: np.ndarray
    crop_inverse: np.ndarray
    crop_size: int = 512
    all_faces: list[Box] = field(default_factory=list)
    frame_size: tuple[int, int] = (0, 0)
    motion: float = 0.0


def landmark_boxes(landmarks: np.ndarray) -> list[Box]:
    """[F, N, >=2] -> F boxes (x0, y0, x1, y1) of the x/y extent."""
    lo, hi = landmarks[..., :2].min(1), landmarks[..., :2].max(1)
    return [(float(a[0]), float(a[1]), float(b[0]), float(b[1])) for a, b in zip(lo, hi, strict=True)]


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def select_face(boxes: list[Box], frame_size: tuple[int, int], previous: Box | None = None, min_iou: float = 0.1) -> int:
    """Index of the face to follow: the one overlapping `previous` most (sticky), else, when
    none overlaps by `min_iou`, the largest and most central. Needs at least one box."""
    if previous is not None:
        overlaps = [iou(b, previous) for b in boxes]
        best = int(np.argmax(overlaps))
        if overlaps[best] >= min_iou:
            return best
    W, H = frame_size
    half_diag = 0.5 * float(np.hypot(W, H))

    def salience(b: Box) -> float:
        size = np.sqrt(max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0))
        off = np.hypot((b[0] + b[2]) / 2 - W / 2, (b[1] + b[3]) / 2 - H / 2) / half_diag
        return float(size * (1.0 - 0.5 * off))

    return int(np.argmax([salience(b) for b in boxes]))


def observe(
    landmarks: np.ndarray,
    frame_size: tuple[int, int],
    crop_size: int = 512,
    focal: float | None = None,
    all_faces: list[Box] | None = None,
) -> FaceObservation:
    """The full observation of one face from its landmarks float[N>=468, 3] in a frame (W, H)."""
    W, H = frame_size
    lm = np.asarray(landmarks, np.float32)
    f = default_focal(W, H) if focal is None else focal
    pose = fit_head_pose(lm[None], f, ((W - 1) / 2, (H - 1) / 2))
    label, yaw, pitch, roll = head_pose_to_camera(pose.rotation, pose.translation)
    affine = alignment_affine(five_points(lm[None, :, :2]), roll, crop_size)
    box = landmark_boxes(lm[None])[0]
    return FaceObservation(
        landmarks=lm,
        bbox=box,
        score=float(np.exp(-pose.residual[0] / RESIDUAL_SCALE_CM)),
        rotation=pose.rotation[0],
        translation=pose.translation[0],
        yaw=float(np.degrees(yaw[0])),
        pitch=float(np.degrees(pitch[0])),
        roll=float(np.degrees(roll[0])),
        camera=label[0],
        crop_affine=affine[0].astype(np.float32),
        crop_inverse=invert_affine(affine[0]).astype(np.float32),
        crop_size=crop_size,
        all_faces=list(all_faces) if all_faces is not None else [box],
        frame_size=(W, H),
    )


class FacePoseEstimator:
    """Frame in, observation of the followed face out (None when there is no face).

    Never raises on a frame without a face; accepts gray, RGB or RGBA uint8 frames of any
    size. Acquires the largest/most central face, then keeps it while it overlaps its last
    box (IoU-sticky); `reset()` forgets it. Not thread-safe (one mediapipe graph each).
    """

    def __init__(self, max_faces: int = 4, crop_size: int = 512, static_image: bool = False, focal: float | None = None):
        from live3dpe.pose.landmarks import FaceMeshDetector

        if crop_size <= 0:
            raise ValueError(f"crop_size must be positive, got {crop_size}")
        self.crop_size = crop_size
        self.focal = focal
        self._detector = FaceMeshDetector(max_faces=max_faces, static_image=static_image)
        self._previous: Box | None = None

    def __call__(self, frame_rgb: np.ndarray) -> FaceObservation | None:
        rgb = as_rgb(frame_rgb)
        H, W = rgb.shape[:2]
        faces = self._detector(rgb)
        if len(faces) == 0:
            self._previous = None
            return None
        boxes = landmark_boxes(faces)
        i = select_face(boxes, (W, H), self._previous)
        self._previous = boxes[i]
        return observe(faces[i], (W, H), self.crop_size, self.focal, boxes)

    def reset(self) -> None:
        self._previous = None

    def close(self) -> None:
        self._detector.close()

    def __enter__(self) -> FacePoseEstimator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
