"""The paper encoder, loaded through the importer with the reference's synthetic weights,
reproduces the official intermediates (CONVENTIONS.md §10, vectors a and b)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from live3dpe.model.config import PAPER
from live3dpe.model.image_prompt import preprocess_reference
from live3dpe.model.importer import OURS_NOT_IN_OFFICIAL, SECTIONS, export_official, import_official
from live3dpe.model.network import EditorNet

pytestmark = pytest.mark.slow  # one paper-size forward pass (~10-30 s on 2 cores)

VEC_A, VEC_B = "vec_a_encoder_edit.npz", "vec_b_encoder_rec.npz"
INTERMEDIATES = ("elow_backbone", "elow_aspp", "f_feature", "high_feature", "ref_query_tokens", "cross_attn_out", "triplane")


@pytest.fixture(scope="module")
def reference(conformance):
    return {
        "synth": conformance.synth(),
        "layout": conformance.json("official_3dpe_checkpoint_layout.json"),
        "checksums": conformance.json("synth_weight_checksums.json"),
        "a": conformance.inputs(VEC_A),
    }


@pytest.fixture(scope="module")
def synth_checkpoint(reference):
    """The official layout filled by the synthetic rule; pos_embed / resample_filter keep constructor values."""
    constructor = export_official(EditorNet(PAPER))
    ckpt = {}
    for section in SECTIONS:
        ckpt[section] = {}
        for key, info in reference["layout"][section].items():
            w = reference["synth"].synth_weight(key, info["shape"])
            ckpt[section][key] = constructor[section][key].clone() if w is None else torch.from_numpy(w)
    return ckpt


@pytest.fixture(scope="module")
def run(reference, synth_checkpoint):
    """One paper-size pass: every intermediate of the editing path, MAE tokens, and the reconstruction triplane."""
    net = EditorNet(PAPER).eval()
    report = import_official(net, synth_checkpoint)
    a = reference["a"]
    x = torch.from_numpy(a["x_u8"]).permute(2, 0, 1)[None].float() / 255 * 2 - 1
    r = preprocess_reference(a["r_u8"], PAPER.ref_resolution)
    with torch.no_grad():
        tokens = net.image_prompt(r)
        out = net.encoder.trace(x, tokens)
        rec = net.encoder.fuse({k: out[k] for k in ("f_feature", "high_feature")}, None)
    return {"out": out, "tokens": tokens, "rec": rec, "report": report, "net": net}


def test_synthetic_weights_match_reference_checksums(reference, synth_checkpoint):
    for section in SECTIONS:
        expected = reference["checksums"][section]
        assert set(expected) == set(synth_checkpoint[section])
        for key, (shape, total, abs_total, first, _source) in expected.items():
            t = synth_checkpoint[section][key].double()
            assert list(t.shape) == shape, key
            np.testing.assert_allclose(t.sum().item(), total, rtol=1e-6, atol=1e-6, err_msg=key)
            np.testing.assert_allclose(t.abs().sum().item(), abs_total, rtol=1e-6, err_msg=key)
            np.testing.assert_allclose(t.reshape(-1)[0].item(), first, rtol=1e-6, err_msg=key)


def test_import_fills_every_parameter_the_official_model_has(run):
    assert all(k.startswith(OURS_NOT_IN_OFFICIAL) for k in run["report"].not_in_checkpoint)


@pytest.mark.parametrize("name", INTERMEDIATES)
def test_editing_path_intermediates_match_official(run, conformance, name):
    tol = conformance.tolerance(VEC_A, name)
    conformance.check(VEC_A, name, run["out"][name], tol["val_atol"], tol["val_rtol"], tol["stats_atol"], tol["abs_sum_rtol"])


def test_mae_tokens_match_official(run, conformance):
    conformance.check(VEC_A, "mae_tokens", run["tokens"], atol=3e-5, stats_atol=3e-5, abs_sum_rtol=1e-5)


def test_constructor_pos_embed_is_official_sincos_table(conformance):
    from live3dpe.model.image_prompt import ImagePromptEncoder

    pos = ImagePromptEncoder(PAPER).pos_embed
    assert not pos.requires_grad
    conformance.check(VEC_A, "mae_pos_embed_official", pos, atol=1e-6)


def test_reconstruction_path_matches_official(run, conformance):
    tol = conformance.tolerance(VEC_B, "triplane")
    conformance.check(VEC_B, "triplane", run["rec"], tol["val_atol"], tol["val_rtol"], tol["stats_atol"], tol["abs_sum_rtol"])


def test_reference_preprocessing_matches_official_recipe(reference):
    """vectors.json recipe for r: (u8/255 - mean) / std at 224 (no resize needed)."""
    r_u8 = reference["a"]["r_u8"]
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32)
    expected = ((r_u8.astype(np.float32) / 255 - mean) / std).transpose(2, 0, 1)[None]
    np.testing.assert_allclose(preprocess_reference(r_u8, 224).numpy(), expected, atol=1e-6)
