"""Offline identity metric for real faces: the dlib ResNet face descriptor.

`dlib-bin` and `face-recognition-models` (the `eval` extra) carry the detector, the 5-point
shape model and the descriptor network inside their wheels, so nothing is downloaded at run
time. Two faces closer than 0.6 in descriptor space are the same person (dlib's threshold,
99.38 % on LFW). A face dlib cannot find scores distance 1.0: an edit that destroys the face
must count as lost identity, not be left out of the mean.

ArcFace from a local .onnx (`learned.ArcFaceIdentity`) remains the alternative for the
synthetic suite.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from live3dpe.evaluation.learned import Unavailable

SAME_PERSON = 0.6  # dlib's same-person threshold on descriptor distance
NO_FACE_DISTANCE = 1.0  # distance charged when either face cannot be found
_MODEL_FILES = ("shape_predictor_5_face_landmarks.dat", "dlib_face_recognition_resnet_model_v1.dat")
INSTALL_HINT = "pip install 'live3dpe[eval]' (dlib-bin, face-recognition-models)"


def model_dir() -> Path:
    """Where face-recognition-models keeps its .dat files (located, not imported: its code is not needed)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"face-recognition-models is not installed: {INSTALL_HINT}")
    root = Path(next(iter(spec.submodule_search_locations))) / "models"
    missing = [f for f in _MODEL_FILES if not (root / f).is_file()]
    if missing:
        raise ImportError(f"face-recognition-models at {root} lacks {', '.join(missing)}")
    return root


class DlibIdentity:
    """Face descriptor distance between two uint8 RGB images (largest face in each)."""

    name = "identity_dlib"
    threshold = SAME_PERSON

    def __init__(self, upsample: int = 1) -> None:
        import dlib  # imported here: optional dependency (the `eval` extra)

        root = model_dir()
        self._detector = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(str(root / _MODEL_FILES[0]))
        self._net = dlib.face_recognition_model_v1(str(root / _MODEL_FILES[1]))
        self.upsample = upsample  # one 2x upsample finds faces down to ~40 px

    def descriptor(self, image: np.ndarray) -> np.ndarray | None:
        """128-d descriptor of the largest face, or None when dlib finds no face."""
        image = np.ascontiguousarray(image)
        boxes = self._detector(image, self.upsample)
        if not boxes:
            return None
        box = max(boxes, key=lambda b: b.width() * b.height())
        return np.asarray(self._net.compute_face_descriptor(image, self._shape(image, box)))

    @staticmethod
    def between(a: np.ndarray | None, b: np.ndarray | None) -> float:
        """Distance of two descriptors; `NO_FACE_DISTANCE` when either face was not found."""
        return NO_FACE_DISTANCE if a is None or b is None else float(np.linalg.norm(a - b))

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        return self.between(self.descriptor(a), self.descriptor(b))


def load_dlib_identity() -> DlibIdentity | Unavailable:
    """The dlib metric, or why it cannot run here (the report says so instead of guessing)."""
    try:
        return DlibIdentity()
    except ImportError as err:
        reason = str(err) if "face-recognition-models" in str(err) else f"dlib is not installed: {INSTALL_HINT}"
        return Unavailable(DlibIdentity.name, f"unavailable ({reason})")
