"""Fault injection on the model files: hostile or broken checkpoints give one clear error line."""
from __future__ import annotations

import json
import os

import pytest
import torch

from live3dpe.cli import main
from live3dpe.model import checkpoint
from live3dpe.model.config import TINY

pytestmark = pytest.mark.timeout(120)


class _RunsCode:
    """A pickle payload that would create a file if it were ever unpickled with code allowed."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        ("refused-pickle", "not a valid or safe checkpoint"),
        ("empty", "is empty, not a checkpoint"),
        ("text", "not a PyTorch checkpoint"),
        ("damaged-zip", "not a PyTorch checkpoint or is damaged"),
        ("list", "must be a dict of state dicts"),
    ],
    ids=["refused-pickle", "empty", "text", "damaged-zip", "list"],
)
def test_weights_import_of_a_bad_file_is_a_clear_error(tmp_path, capsys, make, needle):
    """Defect 5: a refused pickle showed UnpicklingError suggesting weights_only=False; an empty file EOFError;
    a text file KeyError."""
    source, marker = tmp_path / "3dpe.pt", tmp_path / "pwned"
    if make == "refused-pickle":
        torch.save({"encoder_state_dict": _RunsCode(str(marker))}, source)
    elif make == "empty":
        source.write_bytes(b"")
    elif make == "text":
        source.write_text("is this a checkpoint? " * 20)
    elif make == "damaged-zip":
        torch.save({"encoder_state_dict": {}}, source)
        source.write_bytes(source.read_bytes()[:-200])
    else:
        torch.save([torch.zeros(2)], source)
    out = tmp_path / "out.safetensors"
    assert main(["weights", "import", str(source), str(out), "--preset", "tiny"]) == 1
    err = capsys.readouterr().err
    assert needle in err
    assert "weights_only" not in err and "Traceback" not in err
    assert not marker.exists() and not out.exists()


def test_weights_import_output_name_is_checked_before_the_import(tmp_path, capsys):
    source = tmp_path / "3dpe.pt"
    source.write_bytes(b"")
    assert main(["weights", "import", str(source), str(tmp_path / "out.pt")]) == 1
    assert "must end in .safetensors" in capsys.readouterr().err


def _rewrite_meta(path, edit) -> None:
    """Change a saved checkpoint's metadata, keeping its tensors (so the checksum still matches)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()[checkpoint.META_KEY])
    edit(meta)
    save_file(load_file(str(path)), str(path), metadata={checkpoint.META_KEY: json.dumps(meta)})


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.safetensors"
    torch.manual_seed(0)
    checkpoint.save_checkpoint(checkpoint.build_net(TINY), path)
    return path


def test_crafted_config_size_is_refused_before_the_network_is_built(saved, monkeypatch):
    """Defect 9: a crafted `ref_dim` made the loader try to allocate 51 GB before any check."""
    from live3dpe.model import network

    built_on = []
    original = network.EditorNet.__init__

    def spy(self, cfg):
        built_on.append(torch.empty(0).device.type)
        original(self, cfg)

    monkeypatch.setattr(network.EditorNet, "__init__", spy)
    _rewrite_meta(saved, lambda m: m["config"].update(ref_dim=TINY.ref_dim * 8))
    with pytest.raises(ValueError, match="does not match the model"):
        checkpoint.load_checkpoint(saved)
    assert built_on == ["meta"]  # only shapes were built: no real allocation for the crafted size


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda m: m["config"].update(ref_dim=51_000_000_000), "outside 0.."),
        (lambda m: m["config"].update(f_dim=-4), "outside 0.."),
        (lambda m: m["config"]["render"].update(ray_start=float("nan")), "not finite"),
        (lambda m: m["config"].update(elow_channels="wide"), "unexpected|malformed|buildable"),
        (lambda m: m.update(text_dim=10**9), "text_dim"),
        (lambda m: m["config"]["render"].update(bogus=1), "malformed"),
    ],
    ids=["huge", "negative", "nan", "wrong-type", "text-dim", "unknown-render-field"],
)
def test_malformed_checkpoint_metadata_is_a_clear_error(saved, edit, needle):
    _rewrite_meta(saved, edit)
    with pytest.raises(ValueError, match=needle):
        checkpoint.load_checkpoint(saved)


def test_bundled_and_saved_checkpoints_still_load(saved):
    net, meta = checkpoint.load_checkpoint(saved)
    assert meta.config == TINY and not net.training
    assert os.path.getsize(saved) > 0
