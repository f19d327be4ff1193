"""The official-checkpoint importer: `paper` <-> official layout key for key, both ways, strictly."""
from __future__ import annotations

import pytest
import torch

from live3dpe.model.config import PAPER, TINY
from live3dpe.model.importer import (
    ENCODER,
    OURS_NOT_IN_OFFICIAL,
    RENDERER,
    SECTIONS,
    CheckpointMismatchError,
    export_official,
    import_live3d_encoder,
    import_official,
    official_key_map,
)
from live3dpe.model.network import EditorNet


@pytest.fixture(scope="module")
def layout(conformance):
    data = conformance.json("official_3dpe_checkpoint_layout.json")
    return {s: {k: tuple(v["shape"]) for k, v in data[s].items()} for s in SECTIONS}


@pytest.fixture(scope="module")
def rec_keys(conformance):
    return conformance.json("vectors.json")["rec_encoder_keys"]


@pytest.fixture(scope="module")
def paper_net():
    return EditorNet(PAPER)


def _filled(layout: dict, section: str, value_of=lambda i: 0.0) -> dict[str, torch.Tensor]:
    """A layout section as stride-0 constant tensors (no memory); key i holds value_of(i)."""
    return {k: torch.full((), float(value_of(i))).expand(shape) for i, (k, shape) in enumerate(layout[section].items())}


def _layout_checkpoint(layout: dict, value_of=lambda i: 0.0) -> dict:
    return {s: _filled(layout, s, value_of) for s in SECTIONS}


def test_export_has_exact_official_layout(paper_net, layout):
    exported = export_official(paper_net)
    for section in SECTIONS:
        assert {k: tuple(v.shape) for k, v in exported[section].items()} == layout[section]
        assert all(v.dtype == torch.float32 for v in exported[section].values())
    assert len(exported[ENCODER]) == 327 and len(exported[RENDERER]) == 43


def test_every_own_key_has_an_official_counterpart(paper_net):
    key_map = official_key_map(paper_net)
    own = [k for k in paper_net.state_dict() if not k.startswith(OURS_NOT_IN_OFFICIAL)]
    assert sorted(key_map) == sorted(own)
    assert len(set(key_map.values())) == len(key_map), "two of our keys map onto the same official key"


def test_import_places_each_official_tensor_on_its_key(paper_net, layout):
    """Distinct values per official key survive import -> export unchanged, so no two keys are swapped."""
    ckpt = _layout_checkpoint(layout, value_of=lambda i: i + 1)
    report = import_official(paper_net, ckpt)
    assert all(k.startswith(OURS_NOT_IN_OFFICIAL) for k in report.not_in_checkpoint)
    assert len(report.loaded) + len(report.ignored_official) == 327 + 43
    assert all(k.startswith(("encoder_state_dict/encoder.layer3.", "encoder_state_dict/encoder.layer4.", "renderer_state_dict/superresolution."))
               for k in report.ignored_official)
    exported = export_official(paper_net)
    ignored = set(report.ignored_official)
    for section in SECTIONS:
        for key, value in ckpt[section].items():
            if f"{section}/{key}" not in ignored:
                assert torch.equal(exported[section][key], value), key


def test_zero_layout_imports(paper_net, layout):
    report = import_official(paper_net, _layout_checkpoint(layout))
    assert len(report.loaded) == len(official_key_map(paper_net))
    assert all(float(p.detach().abs().max()) == 0 for p in paper_net.encoder.parameters())


def test_extra_top_level_entries_are_ignored(paper_net, layout):
    """Training checkpoints also hold optimizer/discriminator state (CONVENTIONS.md §1): the import
    loads the two state dicts exactly as from a plain file and reports nothing about the rest."""
    plain = _layout_checkpoint(layout, value_of=lambda i: i + 1)
    extra = {"opts": {"lr": 1e-4}, "step": torch.tensor(5), "discriminator_state": {"w": torch.ones(3)}, "encoder_optimizer": {}}
    report = import_official(paper_net, plain | extra)
    assert report == import_official(EditorNet(PAPER), plain)
    assert not any(name in key for key in report.loaded + report.ignored_official for name in extra)
    exported = export_official(paper_net)
    ignored = set(report.ignored_official)
    for section in SECTIONS:
        for key, value in plain[section].items():
            if f"{section}/{key}" not in ignored:
                assert torch.equal(exported[section][key], value), key


def test_mismatch_names_exactly_the_offending_keys(paper_net, layout):
    ckpt = _layout_checkpoint(layout)
    del ckpt[ENCODER]["F_encoder.blocks.1.attn.q.weight"]
    ckpt[RENDERER]["superresolution.block2.conv0.weight"] = torch.zeros(3)
    ckpt[ENCODER]["Final_encoder.pathembed.proj.weight"] = torch.zeros(1024, 256, 5, 5)
    ckpt[RENDERER]["superresolution.block1.conv1.noise_const"] = torch.zeros(256, 256)  # an unused key, wrong shape
    with pytest.raises(CheckpointMismatchError) as info:
        import_official(paper_net, ckpt)
    err = info.value
    assert err.missing == ["encoder_state_dict/F_encoder.blocks.1.attn.q.weight"]
    assert err.unexpected == ["renderer_state_dict/superresolution.block2.conv0.weight"]
    assert err.wrong_shape == {
        "encoder_state_dict/Final_encoder.pathembed.proj.weight": ((1024, 256, 7, 7), (1024, 256, 5, 5)),
        "renderer_state_dict/superresolution.block1.conv1.noise_const": ((512, 512), (256, 256)),
    }
    for text in ("F_encoder.blocks.1.attn.q.weight", "block2.conv0.weight", "[1024, 256, 7, 7]", "[1024, 256, 5, 5]"):
        assert text in str(err)


def test_mismatch_leaves_the_model_untouched(layout):
    net = EditorNet(TINY)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(CheckpointMismatchError):
        import_official(net, _layout_checkpoint(layout))  # paper layout into the tiny model
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_missing_section_is_named(paper_net, layout):
    with pytest.raises(ValueError, match="renderer_state_dict"):
        import_official(paper_net, {ENCODER: _filled(layout, ENCODER)})
    with pytest.raises(ValueError, match="not tensors"):
        import_official(paper_net, {ENCODER: {"encoder.conv1.weight": [1, 2]}, RENDERER: {}})


def test_non_dict_file_is_rejected(paper_net, tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(ValueError, match="dict of state dicts"):
        import_official(paper_net, path)


def test_tiny_roundtrip_through_a_file(tmp_path):
    torch.manual_seed(0)
    src, dst = EditorNet(TINY), EditorNet(TINY)
    path = tmp_path / "3dpe_tiny.pt"
    torch.save(export_official(src) | {"step": 3}, path)
    import_official(dst, path)
    src_state = src.state_dict()
    for k, v in dst.state_dict().items():
        if not k.startswith(OURS_NOT_IN_OFFICIAL):
            assert torch.equal(v, src_state[k]), k


def test_live3d_encoder_keys_are_the_official_reconstruction_encoder(paper_net, layout, rec_keys):
    flat = {k: torch.full((), 2.0).expand(shape) for k, shape in rec_keys.items()}
    assert len(flat) == 170
    for ckpt in (flat, {ENCODER: flat}):
        image_prompt_before = paper_net.image_prompt.norm.weight.detach().clone()
        report = import_live3d_encoder(paper_net, ckpt)
        assert report.loaded and all(k.startswith("encoder.") for k in report.loaded)
        assert not any(k.startswith("encoder.cross_attention.") for k in report.loaded)
        assert torch.equal(paper_net.image_prompt.norm.weight, image_prompt_before)
        assert float(paper_net.encoder.fusion.merge.weight.detach().min()) == 2.0


def test_live3d_import_rejects_the_prompt_side(paper_net, layout):
    with pytest.raises(CheckpointMismatchError) as info:
        import_live3d_encoder(paper_net, _filled(layout, ENCODER))
    assert len(info.value.unexpected) == 157
    assert all(k.startswith("encoder_state_dict/Ref_encoder.") for k in info.value.unexpected)
