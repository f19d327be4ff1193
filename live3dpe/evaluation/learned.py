"""Metrics that need learned weights: ArcFace identity and CLIP image-image similarity.

Weights are never downloaded: a metric runs only from a local file or folder the user
supplies, and is otherwise reported as unavailable with the reason, so a report never
mixes a measured number with a guess.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

NO_WEIGHTS = "unavailable (no weights supplied)"

# insightface's 112x112 ArcFace template: eye centres, nose tip, mouth corners (x, y px).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]], np.float32
)
# FaceMesh indices of the same five points: the subject's right iris, left iris, nose tip,
# right and left mouth corner (the image's left eye comes first, as in the template).
_FIVE_POINT_LANDMARKS = (468, 473, 4, 61, 291)


class ImageSimilarity(Protocol):
    """Similarity in [-1, 1] of two uint8 RGB images; NaN when it cannot be measured."""

    name: str

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float: ...


@dataclass(frozen=True)
class Unavailable:
    """A metric that cannot run here; `reason` goes into the report verbatim."""

    name: str
    reason: str


def align_to_template(image: np.ndarray, points: np.ndarray, size: int = 112) -> np.ndarray:
    """Similarity-warp `image` so its five points land on the ArcFace template (as insightface does)."""
    template = ARCFACE_TEMPLATE * (size / 112.0)
    matrix, _ = cv2.estimateAffinePartial2D(points.astype(np.float32), template, method=cv2.LMEDS)
    if matrix is None:
        raise ValueError("could not fit a similarity transform to the five points")
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


class ArcFaceIdentity:
    """Cosine similarity of ArcFace embeddings (an insightface recognition .onnx, e.g. w600k_r50).

    Faces are located with FaceMesh (small renders are upscaled to 256 first) and aligned to
    the 5-point template; an image without a detectable face scores NaN.
    """

    name = "identity_arcface"

    def __init__(self, model_path: str | os.PathLike) -> None:
        import onnxruntime  # imported here: optional dependency

        from live3dpe.pose.landmarks import FaceMeshDetector

        self._session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._detector = FaceMeshDetector(max_faces=1, static_image=True)

    def embed(self, image: np.ndarray) -> np.ndarray | None:
        """uint8 RGB [H, W, 3] -> unit 512-d embedding, or None without a face."""
        scale = max(1.0, 256.0 / min(image.shape[:2]))
        big = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC) if scale > 1 else image
        faces = self._detector(np.ascontiguousarray(big))
        if len(faces) == 0:
            return None
        crop = align_to_template(big, faces[0][list(_FIVE_POINT_LANDMARKS), :2])
        blob = ((crop.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[None]
        v = self._session.run(None, {self._input: blob})[0][0]
        return v / max(float(np.linalg.norm(v)), 1e-12)

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        ea, eb = self.embed(a), self.embed(b)
        return float("nan") if ea is None or eb is None else float(ea @ eb)


class ClipImageSimilarity:
    """Cosine similarity of CLIP image embeddings (a `transformers` CLIPModel saved in a local folder)."""

    name = "clip_image"

    def __init__(self, model_dir: str | os.PathLike) -> None:
        import torch
        from transformers import CLIPImageProcessor, CLIPModel

        self._torch = torch
        self._model = CLIPModel.from_pretrained(str(model_dir), local_files_only=True).eval()
        self._processor = CLIPImageProcessor.from_pretrained(str(model_dir), local_files_only=True)

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        """uint8 RGB images -> unit embeddings [N, D]."""
        with self._torch.inference_mode():
            pixels = self._processor(images=list(images), return_tensors="pt")["pixel_values"]
            v = self._model.get_image_features(pixel_values=pixels)
            v = v if isinstance(v, self._torch.Tensor) else v.pooler_output  # newer transformers return an output object
            return self._torch.nn.functional.normalize(v.float(), dim=-1).numpy()

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        e = self.embed([a, b])
        return float(e[0] @ e[1])


def load_identity(model_path: str | os.PathLike | None) -> ArcFaceIdentity | Unavailable:
    """ArcFace from a local .onnx when given and onnxruntime is installed, else the reason it is not."""
    if model_path is None:
        return Unavailable(ArcFaceIdentity.name, NO_WEIGHTS)
    if not Path(model_path).is_file():
        raise FileNotFoundError(f"ArcFace model {model_path} not found")
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return Unavailable(ArcFaceIdentity.name, "unavailable (onnxruntime not installed)")
    return ArcFaceIdentity(model_path)


def load_clip(model_dir: str | os.PathLike | None) -> ClipImageSimilarity | Unavailable:
    """CLIP from a local `save_pretrained` folder when given, else unavailable."""
    if model_dir is None:
        return Unavailable(ClipImageSimilarity.name, NO_WEIGHTS)
    if not Path(model_dir).is_dir():
        raise FileNotFoundError(f"CLIP model folder {model_dir} not found")
    return ClipImageSimilarity(model_dir)
