"""Checkpoint format: round trip, integrity, config mismatches, atomic save."""
from __future__ import annotations

import json

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
    clip_net = build_net(TINY, text_dim=32)
    path = tmp_path / "clip.safetensors"
    save_checkpoint(clip_net, path, text_backend="clip:/models/clip")
    loaded, meta = load_checkpoint(path)
    assert meta.text_dim == 32 and meta.text_backend == "clip:/models/clip"
    assert loaded.text_prompt.in_dim == 32


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
