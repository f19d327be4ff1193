"""The packaged canonical face matches mediapipe's files and has the documented orientation."""
from __future__ import annotations

import numpy as np

from live3dpe.pose.canonical import canonical_face, five_points, load_canonical_face, procrustes_weights


def _obj_vertices(path) -> np.ndarray:
    return np.array([[float(x) for x in line.split()[1:4]] for line in path.read_text().splitlines() if line.startswith("v ")])


def test_shapes_and_dtypes():
    v, uv, tri = load_canonical_face()
    assert v.shape == (468, 3) and v.dtype == np.float32
    assert uv.shape == (468, 2) and uv.dtype == np.float32
    assert tri.ndim == 2 and tri.shape[1] == 3 and tri.dtype == np.int32
    assert tri.min() == 0 and tri.max() == 467
    w = procrustes_weights()
    assert w.shape == (468,) and np.count_nonzero(w) == 33 and (w >= 0).all()


def test_vertices_match_the_packaged_obj():
    from importlib import resources

    obj = resources.files("live3dpe.pose").joinpath("data", "canonical_face_model.obj")
    np.testing.assert_allclose(_obj_vertices(obj), canonical_face().vertices, atol=1e-5)
    assert resources.files("live3dpe.pose").joinpath("data", "LICENSE").read_text().lstrip().startswith("Apache License")


def test_orientation_is_the_eg3d_world():
    v = canonical_face().vertices
    pts = five_points(v)
    right_eye, left_eye, nose, mouth_r, mouth_l = pts
    assert left_eye[0] > 0 > right_eye[0]  # +x is the subject's left
    assert right_eye[1] > nose[1] > mouth_r[1]  # +y is up
    assert nose[2] > right_eye[2]  # +z points out of the face
    uv = canonical_face().uv
    assert uv[10, 1] < uv[152, 1]  # v grows downwards: forehead (10) above chin (152)


def test_returned_copies_do_not_alias_the_cache():
    v, _, _ = load_canonical_face()
    v[:] = 0
    assert np.abs(canonical_face().vertices).sum() > 0
