"""Checkpoint format: round trip, integrity, config mismatches, atomic save."""
from __future__ import annotations

import json
import os

import pytest
import safetensors.torch
import torch

from live3dpe import __version__
from live3dpe.model.checkpoint import (
    META_KEY,
    build_net,
    load_checkpoint,
    read_meta,
    save_checkpoint,
    sidecar_path,
    tensor_sha256,
)
from live3dpe.model.config import TINY
from live3dpe.model.importer import CheckpointMismatchError


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return build_net(TINY).eval()


@pytest.fixture()
def saved(net, tmp_path):
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(net, path, {"steps": 12, "data": "synth-v1"})
    return path


def _rewrite(path, state, meta_dict):
    """Write `state` with `meta_dict` as metadata, the sha256 recomputed so only the intended flaw remains."""
    meta_dict = dict(meta_dict, sha256=tensor_sha256(state))
    safetensors.torch.save_file(state, str(path), metadata={META_KEY: json.dumps(meta_dict)})


def test_round_trip_bit_exact(net, saved):
    loaded, meta = load_checkpoint(saved)
    original = net.state_dict()
    restored = loaded.state_dict()
    assert original.keys() == restored.keys()
    for k in original:
        assert torch.equal(original[k], restored[k]), k
    assert not loaded.training
    assert meta.config == TINY and meta.preset == "tiny"
    assert meta.text_backend == "minilm" and meta.text_dim == 384
    assert meta.training == {"steps": 12, "data": "synth-v1"}
    assert meta.live3dpe_version == __version__
    assert meta.sha256 == tensor_sha256(original)
    sidecar = json.loads(sidecar_path(saved).read_text())
    as_json = json.loads(json.dumps(meta.to_dict()))
    assert sidecar == as_json == json.loads(json.dumps(read_meta(saved).to_dict()))


def test_load_casts_dtype(saved):
    loaded, _ = load_checkpoint(saved, dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}


def test_text_projection_width_follows_metadata(tmp_path):
    clip_net = build_net(TINY, text_dim=32, text_backend="clip:/models/clip")
    path = tmp_path / "clip.safetensors"
    save_checkpoint(clip_net, path)
    loaded, meta = load_checkpoint(path)
    assert meta.text_dim == 32 and meta.text_backend == "clip:/models/clip"
    assert loaded.text_prompt.in_dim == 32 and loaded.text_prompt.backend == "clip:/models/clip"


def test_corrupted_payload_detected(saved):
    data = bytearray(saved.read_bytes())
    data[-3] ^= 0xFF  # inside the last tensor's bytes
    saved.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_checkpoint(saved)


def test_config_mismatch_lists_keys(saved):
    state = safetensors.torch.load_file(str(saved))
    meta = read_meta(saved).to_dict()
    meta["config"]["plane_channels"] = 8  # the file's tensors were made for 16
    _rewrite(saved, state, meta)
    with pytest.raises(CheckpointMismatchError, match="wrong shape for") as err:
        load_checkpoint(saved)
    assert err.value.wrong_shape and not err.value.missing
    assert all(k.startswith(("encoder.", "renderer.")) for k in err.value.wrong_shape)


def test_missing_and_unexpected_keys_listed(saved):
    state = safetensors.torch.load_file(str(saved))
    dropped = next(iter(sorted(state)))
    del state[dropped]
    state["bogus.weight"] = torch.zeros(2)
    _rewrite(saved, state, read_meta(saved).to_dict())
    with pytest.raises(CheckpointMismatchError) as err:
        load_checkpoint(saved)
    assert err.value.missing == [dropped] and err.value.unexpected == ["bogus.weight"]
    assert dropped in str(err.value) and "bogus.weight" in str(err.value)


def test_atomic_save_keeps_old_file_on_failure(net, saved, monkeypatch):
    before = saved.read_bytes()

    def failing_save(state, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(net, saved)
    assert saved.read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["ckpt.json", "ckpt.safetensors"]

    fresh = saved.parent / "new.safetensors"
    with pytest.raises(OSError):
        save_checkpoint(net, fresh)
    assert not fresh.exists()


def test_saved_checkpoint_is_world_readable_even_under_a_strict_umask(net, tmp_path):
    old = os.umask(0o077)
    try:
        path = tmp_path / "shared.safetensors"
        save_checkpoint(net, path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_bad_inputs(net, tmp_path):
    with pytest.raises(ValueError, match=r"\.safetensors"):
        save_checkpoint(net, tmp_path / "x.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.safetensors")
    plain = tmp_path / "plain.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(1)}, str(plain))
    with pytest.raises(ValueError, match="weights import"):
        load_checkpoint(plain)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_checkpoint(garbage)
    with pytest.raises(TypeError):
        save_checkpoint(net, tmp_path / "y.safetensors", {"bad": object()})
    assert not (tmp_path / "y.safetensors").exists()


def _official_file(net, path, live3d_only=False):
    from live3dpe.model.importer import ENCODER, export_official

    official = {s: {k: v.clone() for k, v in d.items()} for s, d in export_official(net).items()}
    if live3d_only:  # a Live3D reconstruction encoder: the encoder keys without the prompt side
        official = {ENCODER: {k: v for k, v in official[ENCODER].items() if not k.startswith("Ref_encoder.")}}
    torch.save(official, path)
    return path


def test_cli_import_official_and_info(net, tmp_path, capsys):
    from live3dpe.cli import main

    src = _official_file(net, tmp_path / "3dpe.pt")
    out = tmp_path / "imported.safetensors"
    assert main(["weights", "import", str(src), str(out), "--preset", "tiny"]) == 0
    printed = capsys.readouterr().out
    assert "mapped" in printed and "text_prompt." in printed  # our text projection has no official source
    loaded, meta = load_checkpoint(out)
    for k, v in net.state_dict().items():
        if not k.startswith("text_prompt."):
            assert torch.equal(loaded.state_dict()[k], v), k
    assert meta.training["import_kind"] == "3dpe" and meta.training["imported_from"] == "3dpe.pt"
    assert meta.training["left_as_is"] == ["text_prompt"]

    assert main(["weights", "info", str(out), "--verify"]) == 0
    printed = capsys.readouterr().out
    assert "tiny" in printed and meta.sha256 in printed and "verified" in printed

    data = bytearray(out.read_bytes())
    data[-3] ^= 0xFF
    out.write_bytes(bytes(data))
    assert main(["weights", "info", str(out), "--verify"]) == 1
    assert "checksum mismatch" in capsys.readouterr().err


def test_cli_import_live3d_encoder_onto_base(net, saved, tmp_path):
    from live3dpe.cli import main

    torch.manual_seed(7)
    other = build_net(TINY)
    src = _official_file(other, tmp_path / "live3d_lt.pt", live3d_only=True)
    out = tmp_path / "lt.safetensors"
    assert main(["weights", "import", str(src), str(out), "--kind", "live3d-lt", "--base", str(saved)]) == 0
    loaded = load_checkpoint(out)[0].state_dict()
    base, prior = net.state_dict(), other.state_dict()
    for k, v in loaded.items():
        from_prior = k.startswith("encoder.") and not k.startswith("encoder.cross_attention.")
        assert torch.equal(v, prior[k] if from_prior else base[k]), k


def test_cli_import_errors(tmp_path, saved, capsys):
    from live3dpe.cli import main

    assert main(["weights", "import", str(tmp_path / "missing.pt"), str(tmp_path / "o.safetensors")]) == 1
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    torch.save({"encoder_state_dict": {"nonsense": torch.zeros(1)}, "renderer_state_dict": {}}, bad)
    assert main(["weights", "import", str(bad), str(tmp_path / "o.safetensors"), "--preset", "tiny"]) == 1
    assert "nonsense" in capsys.readouterr().err
    assert not (tmp_path / "o.safetensors").exists()
    assert main(["weights", "import", str(bad), str(tmp_path / "o.safetensors"), "--base", str(saved), "--preset", "paper"]) == 1
    assert "--base is preset 'tiny'" in capsys.readouterr().err
