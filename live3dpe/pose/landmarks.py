"""FaceMesh landmarks from mediapipe's legacy solution, fully offline, as 478 points.

mediapipe 0.10.21 carries the FaceMesh models in its wheel; it is imported on first use so
`import live3dpe.pose` stays cheap. A FaceMesh graph is not thread-safe: one per detector.

The iris refinement (`refine_landmarks=True`) runs an attention model that costs more than
the whole 468-point mesh, and nothing downstream (pose fit, five-point crop) needs the iris.
Without it the 10 iris points are filled in from the eye corners (`fill_iris`), so the
landmark array keeps its 478-point shape either way.
"""
from __future__ import annotations

import numpy as np

from live3dpe.pose.canonical import LEFT_EYE, NUM_MESH_LANDMARKS, RIGHT_EYE

NUM_LANDMARKS = 478
IRIS_RADIUS = 0.22  # iris radius / eye width (corner to corner), measured on FaceMesh's iris model
# one serialized NormalizedLandmark with only x, y, z set: 0a 0f | 0d x4 | 15 y4 | 1d z4
_RECORD = 17
_TAGS = {0: 0x0A, 1: 0x0F, 2: 0x0D, 7: 0x15, 12: 0x1D}


def fill_iris(mesh: np.ndarray) -> np.ndarray:
    """[..., 468, 3] mesh points -> [..., 478, 3] with approximate iris points appended.

    Each iris (468-472: the subject's right eye, 473-477: left) is centred between its eye's
    corners, looking straight ahead, with FaceMesh's ring order: along the eye axis towards the
    subject's left, up, back, down. Good enough to draw; gaze is not estimated.
    """
    mesh = np.asarray(mesh, np.float32)
    corners = mesh[..., list(RIGHT_EYE + LEFT_EYE), :]  # [..., 4, 3]
    centres = (corners[..., 0::2, :] + corners[..., 1::2, :]) / 2  # [..., 2 eyes, 3]
    width = np.linalg.norm(corners[..., 0::2, :2] - corners[..., 1::2, :2], axis=-1)  # [..., 2]
    axis = centres[..., 1, :2] - centres[..., 0, :2]
    axis /= np.maximum(np.linalg.norm(axis, axis=-1, keepdims=True), 1e-6)
    up = np.stack([axis[..., 1], -axis[..., 0]], -1)
    ring = np.stack([axis, up, -axis, -up], -2)  # [..., 4, 2]
    irises = np.repeat(centres[..., None, :], 5, -2)  # [..., 2, 5, 3]
    irises[..., 1:, :2] += IRIS_RADIUS * width[..., None, None] * ring[..., None, :, :]
    return np.concatenate([mesh, irises.reshape(mesh.shape[:-2] + (10, 3))], -2)


def parse_landmarks(face) -> np.ndarray:
    """A NormalizedLandmarkList -> float32[N, 3] normalised (x, y, z).

    Reads the serialized bytes in one go when every landmark is exactly (x, y, z), which is
    what FaceMesh emits (10x faster than per-attribute access); otherwise falls back to that.
    """
    raw = np.frombuffer(face.SerializeToString(), np.uint8)
    n = len(face.landmark)
    if raw.size == n * _RECORD:
        rec = raw.reshape(n, _RECORD)
        if all((rec[:, i] == v).all() for i, v in _TAGS.items()):
            cols = np.concatenate([rec[:, 3:7], rec[:, 8:12], rec[:, 13:17]], 1)
            return np.ascontiguousarray(cols).view("<f4").astype(np.float32)
    return np.array([(p.x, p.y, p.z) for p in face.landmark], np.float32).reshape(n, 3)


class FaceMeshDetector:
    """All faces' landmarks in an image: float32[F, 478, 3], x/y in pixels (pixel centres at
    integers, as cv2), z relative depth in the units of x (FaceMesh's, scaled by the width).

    In video mode (`static_image=False`) mediapipe tracks each face from its previous
    landmarks and runs the detector only while fewer than `max_faces` faces are tracked.
    `refine_landmarks` defaults to the real iris (callers that align on it rely on that).
    """

    def __init__(
        self,
        max_faces: int = 4,
        static_image: bool = False,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        refine_landmarks: bool = True,
    ) -> None:
        if max_faces < 1:
            raise ValueError(f"max_faces must be at least 1, got {max_faces}")
        import mediapipe as mp  # lazy: heavy import

        self.refine_landmarks = refine_landmarks
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=static_image,
            max_num_faces=max_faces,
            refine_landmarks=refine_landmarks,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence,
        )

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """rgb: contiguous uint8[H, W, 3] -> float32[F, 478, 3] (F = 0 without a face)."""
        if self._mesh is None:
            raise RuntimeError("FaceMeshDetector is closed")
        H, W = rgb.shape[:2]
        result = self._mesh.process(rgb)
        faces = result.multi_face_landmarks or []
        if not faces:
            return np.empty((0, NUM_LANDMARKS, 3), np.float32)
        out = np.stack([parse_landmarks(f) for f in faces])
        out *= np.array([W, H, W], np.float32)
        out[..., :2] -= 0.5
        return out if out.shape[1] == NUM_LANDMARKS else fill_iris(out[:, :NUM_MESH_LANDMARKS])

    def reset(self) -> None:
        """Forget the tracked faces (video mode): the next call detects afresh (~4 ms)."""
        if self._mesh is not None:
            self._mesh.reset()

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None
