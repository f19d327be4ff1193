"""Face boxes from mediapipe's short-range BlazeFace detector: the cheap multi-face scan.

The live estimator follows one face with a single-face mesh tracker; every other face only
needs a box (`FaceObservation.all_faces`), and a box costs one detector pass instead of a
mesh per face, so a scan is run every few frames rather than mediapipe's detector each frame.
"""
from __future__ import annotations

import numpy as np

Box = tuple[float, float, float, float]


class FaceBoxDetector:
    """rgb uint8[H, W, 3] -> boxes (x0, y0, x1, y1) in pixels, best score first."""

    def __init__(self, min_confidence: float = 0.5) -> None:
        import mediapipe as mp  # lazy: heavy import

        self._det = mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=min_confidence)

    def __call__(self, rgb: np.ndarray) -> list[Box]:
        if self._det is None:
            raise RuntimeError("FaceBoxDetector is closed")
        H, W = rgb.shape[:2]
        boxes = []
        for d in self._det.process(rgb).detections or []:
            b = d.location_data.relative_bounding_box
            boxes.append((b.xmin * W, b.ymin * H, (b.xmin + b.width) * W, (b.ymin + b.height) * H))
        return boxes

    def close(self) -> None:
        if self._det is not None:
            self._det.close()
            self._det = None
