"""Customization quality vs time for 2 / 5 / 10 / 20 pairs (the paper's Table 2 analogue).

A style the editor never saw in stage 2 is learned from n synthetic before/after pairs
(new people, random views); editing PSNR against the ground truth of held-out people is
measured at fixed points of optimisation time.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from live3dpe.model.checkpoint import load_checkpoint
from live3dpe.synth.dataset import sample_cameras
from live3dpe.synth.person import sample_person
from live3dpe.synth.render import render
from live3dpe.synth.styles import STYLES

from .adapt import AdaptConfig, Pairs, adapt
from .data import TextFeatureCache
from .evaluate import EvalSet, edit_psnr, text_prompt

log = logging.getLogger(__name__)
PAIRS_SEED = 31_337


def synth_pairs(style: str, n: int, resolution: int, phrase: str, text: TextFeatureCache, seed: int = PAIRS_SEED) -> Pairs:
    """n before/after pairs of new people at FFHQ-like random views, with a text prompt."""
    before, after, labels = [], [], []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        person = sample_person(rng)
        label = sample_cameras(rng, 1, 0.3, 0.1)[0]
        before.append(render(person, label, resolution, supersample=1).image)
        after.append(render(STYLES[style].apply(person), label, resolution, supersample=1).image)
        labels.append(label)

    def model(x: list) -> torch.Tensor:
        return torch.from_numpy(np.stack(x)).permute(0, 3, 1, 2).float() / 127.5 - 1

    return Pairs(model(before), model(after), torch.from_numpy(np.stack(labels)).float(), text_prompt(style, phrase, text))


def customization_benchmark(
    checkpoint: str | Path,
    style: str,
    es: EvalSet,
    text: TextFeatureCache,
    counts: tuple[int, ...] = (2, 5, 10, 20),
    seconds: float = 60.0,
    eval_at_s: tuple[float, ...] = (10.0, 20.0, 40.0, 60.0),
) -> dict:
    """{n: history rows with edit PSNR at eval points}; each n starts from the same checkpoint."""
    phrase = STYLES[style].train_phrases[0]
    trained = text_prompt(style, phrase, text)
    heldout = text_prompt(style, STYLES[style].heldout_phrases[0], text)
    results = {}
    for n in counts:
        net, _ = load_checkpoint(checkpoint)
        pairs = synth_pairs(style, n, net.cfg.input_resolution, phrase, text)

        def on_eval(m: torch.nn.Module) -> dict[str, float]:
            a = edit_psnr(m, es, style, trained)
            b = edit_psnr(m, es, style, heldout)
            return {"psnr_input": a["input"], "psnr_novel": a["novel"], "psnr_heldout_phrase_novel": b["novel"]}

        history = adapt(net, pairs, AdaptConfig(minutes=seconds / 60, batch=2), on_eval, eval_at_s)
        results[str(n)] = [r for r in history if "psnr_input" in r]
        log.info("customization %s with %d pairs: %s", style, n, results[str(n)][-1])
    return {"style": style, "phrase": phrase, "seconds": seconds, "runs": results}
