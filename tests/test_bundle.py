"""`live3dpe train bundle --preset small` end to end at toy size: the exported default is the two
stages joined (stage 1's triplane path, stage 2's prompt side), starting from a tiny checkpoint."""
from __future__ import annotations

import torch

from live3dpe.model.checkpoint import build_net, load_checkpoint, save_checkpoint
from live3dpe.model.config import get_preset
from live3dpe.train.bundle import BundleConfig, run
from live3dpe.train.params import APPEARANCE_MODULES


def test_small_bundle_joins_the_guided_prior_and_the_appearance_stage(tmp_path, single_thread):
    torch.manual_seed(0)
    init = tmp_path / "tiny.safetensors"
    save_checkpoint(build_net(get_preset("tiny")), init, {})
    cfg = BundleConfig(
        preset="small", work=str(tmp_path / "work"), init=str(init), people=2, views=2, appearance_people=2,
        prior_minutes=0.03, edit_minutes=0.03, restart_minutes=0.02, appearance_batch=2, custom_style="neon",
    )  # fmt: skip
    run(cfg, ("data", "prior", "edit", "restart", "export"), out_dir=tmp_path / "weights", results=tmp_path / "results")

    final, meta = load_checkpoint(tmp_path / "weights" / "default_small.safetensors")
    prior = load_checkpoint(tmp_path / "work" / "prior.safetensors")[0].state_dict()
    first = load_checkpoint(tmp_path / "work" / "edit.safetensors")[0].state_dict()
    edit = load_checkpoint(tmp_path / "work" / "edit_restart.safetensors")[0].state_dict()  # the warm restart
    start = load_checkpoint(init)[0].state_dict()  # stage 1 starts from the tiny checkpoint
    start_edit = load_checkpoint(tmp_path / "work" / "appearance_init.safetensors")[0].state_dict()
    assert meta.config.name == "small" and "neon" not in meta.training["styles_trained"]
    assert meta.training["prior_steps"] > 0 and meta.training["edit_steps"] > 0 and meta.training["restart_steps"] > 0
    assert any(not torch.equal(first[k], edit[k]) for k in first if k.split(".")[0] in APPEARANCE_MODULES)  # the restart trained on
    moved_prior = moved_edit = 0
    for name, value in final.state_dict().items():
        owner = edit if name.split(".")[0] in APPEARANCE_MODULES else prior
        assert torch.equal(value, owner[name]), name
        if owner is edit:
            moved_edit += not torch.equal(start_edit[name], value)
        elif name in start and start[name].shape == value.shape:
            moved_prior += not torch.equal(start[name], value)
    assert moved_prior > 0 and moved_edit > 0  # both stages trained
