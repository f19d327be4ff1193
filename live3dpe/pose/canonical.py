"""mediapipe's canonical face model, packaged in `live3dpe/pose/data/` (Apache-2.0, LICENSE beside it).

The model is read from `geometry_pipeline_metadata_landmarks.pbtxt`, the file mediapipe's own
geometry pipeline uses: it holds the 468 vertices (in landmark order, centimetres), their UVs,
the triangles and the Procrustes landmark weights together, so nothing has to be re-indexed.

Axes: x towards the subject's left (the viewer's right in a frontal photo), y up, z out of the
face towards the viewer. This is the orientation of the EG3D world (see `live3dpe.model.cameras`),
only the unit differs. UV: u right, v down (image convention; v = 0 at the forehead).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

NUM_MESH_LANDMARKS = 468  # FaceMesh without the 10 iris points
# FaceMesh indices of the points the EG3D/Deep3DFaceRecon 5-point alignment uses.
RIGHT_EYE = (33, 133)  # the subject's right eye corners
LEFT_EYE = (263, 362)
NOSE_TIP = 4
MOUTH_RIGHT = 61
MOUTH_LEFT = 291


@dataclass(frozen=True)
class CanonicalFace:
    """The canonical mesh. vertices float32[468, 3] cm, uv float32[468, 2], triangles int32[T, 3],
    weights float32[468] (Procrustes weights, zero for landmarks mediapipe does not fit on)."""

    vertices: np.ndarray
    uv: np.ndarray
    triangles: np.ndarray
    weights: np.ndarray


def _data_text(name: str) -> str:
    return resources.files("live3dpe.pose").joinpath("data", name).read_text()


def _parse_pbtxt(text: str) -> CanonicalFace:
    weights = np.zeros(NUM_MESH_LANDMARKS, np.float32)
    for idx, w in re.findall(r"landmark_id:\s*(\d+)\s+weight:\s*([-+0-9.eE]+)", text):
        weights[int(idx)] = float(w)
    vbuf = np.array(re.findall(r"vertex_buffer:\s*([-+0-9.eE]+)", text), np.float32)
    ibuf = np.array(re.findall(r"index_buffer:\s*(\d+)", text), np.int32)
    if vbuf.size != NUM_MESH_LANDMARKS * 5 or ibuf.size % 3 or not weights.any():
        raise ValueError("canonical face metadata is malformed: expected 468 VERTEX_PT vertices, triangles and weights")
    vbuf = vbuf.reshape(NUM_MESH_LANDMARKS, 5)
    return CanonicalFace(
        vertices=np.ascontiguousarray(vbuf[:, :3]),
        uv=np.ascontiguousarray(vbuf[:, 3:]),
        triangles=ibuf.reshape(-1, 3),
        weights=weights,
    )


@lru_cache(maxsize=1)
def canonical_face() -> CanonicalFace:
    """The packaged canonical face (parsed once; treat the arrays as read-only)."""
    face = _parse_pbtxt(_data_text("geometry_pipeline_metadata_landmarks.pbtxt"))
    for a in (face.vertices, face.uv, face.triangles, face.weights):
        a.setflags(write=False)
    return face


def load_canonical_face() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices float32[468, 3] cm, uv float32[468, 2], triangles int32[T, 3]) — writable copies."""
    face = canonical_face()
    return face.vertices.copy(), face.uv.copy(), face.triangles.copy()


def procrustes_weights() -> np.ndarray:
    """mediapipe's per-landmark Procrustes weights, float32[468] (zero where unused)."""
    return canonical_face().weights.copy()


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """The 5 alignment points from FaceMesh landmarks [..., N>=468, C] -> [..., 5, C].

    Order (as Deep3DFaceRecon's `extract_5p`): right eye, left eye, nose tip, right and left
    mouth corner, where right/left are the subject's. An eye centre is the mean of its two
    corners (as the 68-point recipe): unlike the iris it does not move with gaze or blinks.
    """
    right = landmarks[..., list(RIGHT_EYE), :].mean(-2)
    left = landmarks[..., list(LEFT_EYE), :].mean(-2)
    return np.stack(
        [right, left, landmarks[..., NOSE_TIP, :], landmarks[..., MOUTH_RIGHT, :], landmarks[..., MOUTH_LEFT, :]],
        axis=-2,
    )
