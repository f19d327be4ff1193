"""The compact conformance copy in tests/data: small, derived from the full vectors, and strict enough."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from reference_vectors import COMPACT, Conformance, FullVectors, regenerate_inputs, sha256

from live3dpe.model.raymarcher import raymarch


def test_compact_copy_is_small_and_complete(conformance):
    size = sum(p.stat().st_size for p in COMPACT.iterdir())
    assert size < 3_000_000, f"compact conformance copy is {size / 1e6:.1f} MB"
    assert set(conformance.manifest["inputs"]) == {f"{v}:{n}" for v in conformance.manifest["source_sha256"] for n in regenerate_inputs(v)}


def test_compact_copy_is_derived_from_the_full_vectors(conformance):
    """Rebuild the compact form from the full vectors and compare it with the shipped files, array by array."""
    if conformance.full is None:
        pytest.skip("the optional full vectors are not present (../shared/reference/conformance)")
    full: FullVectors = conformance.full
    for vector in ("vec_a_encoder_edit.npz", "vec_b_encoder_rec.npz", "vec_c_camera_rays.npz",
                   "vec_d_planes_decoder.npz", "vec_e_raymarch.npz", "vec_f_superres.npz"):  # fmt: skip
        rebuilt, shipped = full.compact(vector), conformance.compact.arrays(vector)
        assert rebuilt.keys() == shipped.keys(), vector
        for name in rebuilt:
            np.testing.assert_array_equal(rebuilt[name], shipped[name], err_msg=f"{vector}:{name}")
        for name in regenerate_inputs(vector):
            assert sha256(full.arrays(vector)[name]) == conformance.manifest["inputs"][f"{vector}:{name}"]


def test_compact_reference_alone_catches_a_layout_bug():
    """Only the compact copy: the correct ray march passes, one with its colour channels reversed fails."""
    compact_only = Conformance(full=None)
    vec = "vec_e_raymarch.npz"
    tol = compact_only.tolerance(vec)
    inputs = compact_only.inputs(vec)
    colors = torch.from_numpy(inputs["colors_u8"]).float() / 255
    rgb, _, _ = raymarch(colors, torch.from_numpy(inputs["densities"]), torch.from_numpy(inputs["depths"]))
    compact_only.check(vec, "rgb", rgb, tol["rgb_atol"])
    with pytest.raises(AssertionError):
        compact_only.check(vec, "rgb", rgb.flip(-1), tol["rgb_atol"])
    with pytest.raises(AssertionError):
        compact_only.check(vec, "rgb", rgb + 3 * tol["rgb_atol"], tol["rgb_atol"])
