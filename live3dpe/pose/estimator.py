"""Per-frame face observation: landmarks -> head pose -> model camera -> aligned crop.

`observe` is the pure part (landmarks in, observations out) so it can be tested on known
landmarks; `FacePoseEstimator` adds mediapipe and keeps the chosen face across frames.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from live3dpe.model.cameras import Camera
from live3dpe.pose.align import alignment_affine, as_rgb, invert_affine, scale_affine, warp_crop
from live3dpe.pose.canonical import five_points
from live3dpe.pose.detection import FaceBoxDetector
from live3dpe.pose.headpose import default_focal, fit_head_pose, head_pose_to_camera
from live3dpe.pose.landmarks import FaceMeshDetector
from live3dpe.pose.tracker import WindowedFaceTracker, search_windows

Box = tuple[float, float, float, float]
RESIDUAL_SCALE_CM = 2.0  # fit residual at which the score has dropped to 1/e
# Plausibility of a detection (see `implausible`). Measured with mediapipe 0.10: real faces of
# 14-25 px in 80-128 px frames are found, and so are false "faces" of ~10 px on texture (the
# skimage rocket at 256x170); real faces fit with a score of 0.65-0.85 whatever their size,
# so the score cannot tell them apart, size and roll can.
MIN_FACE_PX = 20  # landmark box side below which an edit is a blur and false detections live
LOW_RES_FACE_PX = 48  # below this, the mesh is unreliable enough that a strong roll means a false face
MAX_LOW_RES_ROLL_DEG = 30.0


@dataclass
class FaceObservation:
    """One face in one frame, ready for the model and the compositor.

    landmarks float32[478, 3] (x, y frame px with pixel centres at integers, z relative; the
    iris points 468-477 are filled in from the eye corners unless `refine_landmarks`);
    bbox (x0, y0, x1, y1) px of the landmarks; score in (0, 1], how well the landmarks fit a
    rigid face; rotation float[3, 3] and translation float[3] cm: the head in the (assumed)
    camera's OpenCV space; yaw/pitch/roll degrees (the model camera's yaw/pitch, the face's
    counter-clockwise in-plane angle; see `headpose`); camera: the model's `Camera` (batch 1);
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
    camera: Camera
    crop_affine: np.ndarray
    crop_inverse: np.ndarray
    crop_size: int = 512
    all_faces: list[Box] = field(default_factory=list)
    frame_size: tuple[int, int] = (0, 0)
    motion: float = 0.0

    def model_crop(self, frame: np.ndarray, size: int) -> np.ndarray:
        """The aligned face uint8[size, size, 3] at the resolution a model takes (the same
        alignment as the `crop_size` crop, resampled once from the frame)."""
        return warp_crop(frame, scale_affine(self.crop_affine, size / self.crop_size), size)


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
        camera=Camera(torch.from_numpy(label[:1])),
        crop_affine=affine[0].astype(np.float32),
        crop_inverse=invert_affine(affine[0]).astype(np.float32),
        crop_size=crop_size,
        all_faces=list(all_faces) if all_faces is not None else [box],
        frame_size=(W, H),
    )


def implausible(obs: FaceObservation) -> str | None:
    """Why `obs` is not a face worth editing (a false or unusable detection), or None.

    Too small: under `MIN_FACE_PX` the crop is upsampled many times over and pasting the edit
    back covers whatever was detected (on a tiny video: the torso). Small and strongly rolled:
    at low resolution false detections come at arbitrary in-plane angles, while a real face
    in a video is nearly always within a moderate tilt."""
    x0, y0, x1, y1 = obs.bbox
    side = max(x1 - x0, y1 - y0)
    if side < MIN_FACE_PX:
        return f"face of {side:.0f} px is below the {MIN_FACE_PX} px minimum"
    if side < LOW_RES_FACE_PX and abs(obs.roll) > MAX_LOW_RES_ROLL_DEG:
        return f"face of {side:.0f} px rolled {obs.roll:.0f}° is more likely a false detection"
    return None


class FacePoseEstimator:
    """Frame in, observation of the followed face out (None when there is no face).

    Never raises on a frame without a face; accepts gray, RGB or RGBA uint8 frames of any
    size. Acquires the largest/most central face (in video mode: with `max_faces` > 1, else
    mediapipe's most confident), then keeps it; `reset()` forgets it. Not thread-safe.

    Video mode (`static_image=False`, the live path): one single-face mesh tracker
    (`tracker.WindowedFaceTracker`, which also searches windows for faces too small for
    mediapipe's detector in the full frame); with `max_faces` > 1 a box detector scans the
    frame every `scan_every` frames, when the face is lost and once per search cycle, to pick
    the salient face and refresh `all_faces`, whose other boxes may therefore be up to
    `scan_every` frames old. (mediapipe's own `max_faces=4` video mode runs its detector every
    frame while fewer faces are tracked, i.e. always with one person: ~30% more per frame.)
    Photo mode (`static_image=True`): every face meshed each call, IoU-sticky selection.
    `refine_landmarks`: the real iris points (costly, unused by pose and crop) instead of
    ones filled in from the eye corners. Detections that are `implausible` (tiny, or small
    and strongly rolled) count as no face.
    """

    def __init__(
        self,
        max_faces: int = 4,
        crop_size: int = 512,
        static_image: bool = False,
        focal: float | None = None,
        refine_landmarks: bool = False,
        scan_every: int = 30,
    ):
        if crop_size <= 0:
            raise ValueError(f"crop_size must be positive, got {crop_size}")
        if max_faces < 1 or scan_every < 1:
            raise ValueError(f"max_faces and scan_every must be at least 1, got {max_faces}, {scan_every}")
        self.crop_size = crop_size
        self.focal = focal
        self.scan_every = scan_every
        self._detector = FaceMeshDetector(max_faces, True, refine_landmarks=refine_landmarks) if static_image else None
        self._tracker = None if static_image else WindowedFaceTracker(refine_landmarks=refine_landmarks)
        self._scanner = FaceBoxDetector() if not static_image and max_faces > 1 else None
        self._previous: Box | None = None
        self._others: list[Box] = []
        self._since_scan = scan_every  # scan on the first frame
        self._was_following = False

    def __call__(self, frame_rgb: np.ndarray) -> FaceObservation | None:
        rgb = as_rgb(frame_rgb)
        H, W = rgb.shape[:2]
        if self._tracker is None:
            return self._photo(rgb)
        following = self._tracker.following
        if self._scanner is not None:
            self._since_scan += 1
            just_lost = not following and self._was_following
            self._was_following = following
            if just_lost or self._since_scan >= (self.scan_every if following else len(search_windows(W, H))):
                self._since_scan = 0
                self._others = self._scanner(rgb)
                if not following and self._others:
                    self._tracker.target(self._others[select_face(self._others, (W, H))], W, H)
        lm = self._tracker(rgb)
        if lm is None:
            return None
        box = landmark_boxes(lm[None])[0]
        others = [b for b in self._others if iou(b, box) < 0.3]
        obs = observe(lm, (W, H), self.crop_size, self.focal, [box] + others)
        if implausible(obs):
            self._tracker.reset()  # do not keep following it: search for a real face
            self._was_following = False
            return None
        return obs

    def _photo(self, rgb: np.ndarray) -> FaceObservation | None:
        H, W = rgb.shape[:2]
        faces = self._detector(rgb)
        observations = [observe(lm, (W, H), self.crop_size, self.focal) for lm in faces]
        kept = [o for o in observations if not implausible(o)]
        if not kept:
            self._previous = None
            return None
        boxes = [o.bbox for o in kept]
        chosen = kept[select_face(boxes, (W, H), self._previous)]
        self._previous = chosen.bbox
        chosen.all_faces = boxes
        return chosen

    def reset(self) -> None:
        self._previous = None
        self._others = []
        self._since_scan = self.scan_every
        self._was_following = False
        if self._tracker is not None:
            self._tracker.reset()

    def close(self) -> None:
        for part in (self._detector, self._tracker, self._scanner):
            if part is not None:
                part.close()

    def __enter__(self) -> FacePoseEstimator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
