"""FaceMesh landmarks (478 points with iris) from mediapipe's legacy solution, fully offline.

mediapipe 0.10.21 carries the FaceMesh models in its wheel; it is imported on first use so
`import live3dpe.pose` stays cheap. A FaceMesh graph is not thread-safe: one per detector.
"""
from __future__ import annotations

import numpy as np

NUM_LANDMARKS = 478


class FaceMeshDetector:
    """All faces' landmarks in a frame: float32[F, 478, 3], x/y in pixels (pixel centres at
    integers, as cv2), z relative depth in the units of x (FaceMesh's, scaled by the width).

    In video mode (`static_image=False`) mediapipe tracks each face from its previous
    landmarks and runs the detector only while fewer than `max_faces` faces are tracked.
    """

    def __init__(
        self,
        max_faces: int = 4,
        static_image: bool = False,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
    ) -> None:
        if max_faces < 1:
            raise ValueError(f"max_faces must be at least 1, got {max_faces}")
        import mediapipe as mp  # lazy: heavy import

        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=static_image,
            max_num_faces=max_faces,
            refine_landmarks=True,
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
        out = np.empty((len(faces), NUM_LANDMARKS, 3), np.float32)
        for i, face in enumerate(faces):
            out[i] = [(p.x, p.y, p.z) for p in face.landmark]
        out *= np.array([W, H, W], np.float32)
        out[..., :2] -= 0.5
        return out

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None
