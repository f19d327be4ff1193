"""Customization for the UI: turn uploaded before/after photos (or a synthetic style) into
training pairs, adapt a copy of the editor within a time budget, and hand back a new editor.

The training itself is `live3dpe.train.adapt`; this module only prepares its inputs the way
a photo upload needs (face alignment, shared crop for both images of a pair) and reports
progress while it runs. The base editor is never modified.
"""
from __future__ import annotations

import copy
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence

import numpy as np
import torch

from live3dpe.stream.control import clean_prompt

from .portrait import NoFaceError, check_image

MAX_PAIRS = 20
Progress = Callable[[float, str], None]


def synthetic_styles() -> list[str]:
    from live3dpe.synth.styles import STYLES

    return sorted(STYLES)


def _text_cache(editor):
    from live3dpe.train.data import TextFeatureCache

    if editor.text_backend is None:
        raise ValueError("this model has no text back-end: use a reference image to name the style")
    return TextFeatureCache(editor.text_backend)


def synthetic_pairs(editor, style: str, n: int = 4):
    """n rendered before/after pairs of a built-in synthetic style, prompted by its first phrase."""
    from live3dpe.synth.styles import get_style
    from live3dpe.train.customize_bench import synth_pairs

    if not 1 <= n <= MAX_PAIRS:
        raise ValueError(f"number of pairs must be within 1..{MAX_PAIRS}, got {n}")
    phrase = get_style(style).train_phrases[0]
    return synth_pairs(style, n, editor.input_resolution, phrase, _text_cache(editor))


def photo_pairs(
    editor,
    estimator,
    befores: Sequence[np.ndarray],
    afters: Sequence[np.ndarray],
    prompt: str | None,
    reference: np.ndarray | None,
    style: str,
):
    """Pairs from photos: each `before` is aligned and its `after` cropped the same way (same camera)."""
    from live3dpe.train.adapt import load_pairs, write_pairs

    if len(befores) != len(afters):
        raise ValueError(f"got {len(befores)} before and {len(afters)} after images; they must pair up")
    if not 1 <= len(befores) <= MAX_PAIRS:
        raise ValueError(f"give 1..{MAX_PAIRS} image pairs, got {len(befores)}")
    prompt = clean_prompt(prompt)
    if prompt is None and reference is None:
        raise ValueError("name the style with a text prompt or a reference image")
    r = editor.input_resolution
    crops_b, crops_a, labels = [], [], []
    for i, (b, a) in enumerate(zip(befores, afters)):
        b, a = check_image(b, f"before image {i + 1}"), check_image(a, f"after image {i + 1}")
        if a.shape != b.shape:
            raise ValueError(f"pair {i + 1}: before is {b.shape[1]}x{b.shape[0]} but after is {a.shape[1]}x{a.shape[0]}")
        obs = estimator(b)
        if obs is None:
            raise NoFaceError(f"no face found in before image {i + 1}")
        crops_b.append(obs.model_crop(b, r))
        crops_a.append(obs.model_crop(a, r))  # the after image cropped exactly as its before
        labels.append(obs.camera.label[0].numpy())
    if reference is not None:
        reference = check_image(reference, "reference image")
    with tempfile.TemporaryDirectory(prefix="live3dpe-pairs-") as folder:
        write_pairs(folder, np.stack(crops_b), np.stack(crops_a), np.stack(labels), prompt=prompt if reference is None else None,
                    reference=reference, style=style)  # fmt: skip
        text = _text_cache(editor) if reference is None else None
        return load_pairs(folder, r, editor.config.ref_resolution, text)


def adapt_editor(editor, pairs, seconds: float, progress: Progress | None = None, max_steps: int | None = None):
    """A new Editor: a copy of `editor` adapted to `pairs` for `seconds` of optimisation."""
    from live3dpe.model.editor import Editor
    from live3dpe.train.adapt import AdaptConfig, adapt

    if not 1 <= seconds <= 3600:
        raise ValueError(f"adaptation budget must be within 1..3600 seconds, got {seconds}")
    net = copy.deepcopy(editor.net).float()
    device = next(net.parameters()).device
    pairs.before, pairs.after, pairs.label = (t.to(device) for t in (pairs.before, pairs.after, pairs.label))
    ticks = tuple(seconds * k / 20 for k in range(1, 20))  # adapt calls back as training time passes these
    start = time.monotonic()

    def tick(_net) -> dict:
        if progress is not None:
            done = min(1.0, (time.monotonic() - start) / seconds)
            progress(done, f"adapting… {done:.0%}")
        return {}

    with torch.inference_mode(False), torch.enable_grad():
        history = adapt(net, pairs, AdaptConfig(minutes=seconds / 60, max_steps=max_steps), on_eval=tick, eval_at_s=ticks)
    if progress is not None:
        progress(1.0, f"done: {len(history)} steps")
    version = f"{editor.weights_version[:16]}+{pairs.prompt.style}-{uuid.uuid4().hex[:6]}"
    return Editor(net, weights_version=version, device=editor.device, dtype=editor.dtype, text_backend=editor.text_backend)
