"""Optimised inference paths equal the reference (eager, modulated) path on the CPU.

The folded super-resolution is checked against the modulated one in test_renderer.py; here
`Editor.compile` (torch.compile, static shapes, as `--compile` uses it) is checked against eager.
"""
import logging
import warnings

import numpy as np
import pytest
import torch

from live3dpe.model.cameras import Camera
from live3dpe.model.editor import Editor
from live3dpe.model.types import PromptEmbedding


def _random_editor() -> Editor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return Editor.load("tiny")


@pytest.mark.slow
def test_compiled_editor_equals_eager_for_any_prompt_length_and_camera():
    eager, compiled = _random_editor(), _random_editor().compile(threads=1)
    assert compiled.net.renderer._compiled_call_impl is not None
    crop = (np.random.default_rng(0).random((128, 128, 3)) * 255).astype(np.uint8)
    x = eager.preprocess(crop)
    for n_tokens, yaw in ((3, 0.0), (11, 0.4)):  # another prompt length must not need a recompile
        tokens = torch.randn(1, n_tokens, eager.config.ref_dim, generator=torch.Generator().manual_seed(n_tokens))
        p = PromptEmbedding(tokens, "text", f"t{n_tokens}")
        ref_planes, fast_planes = eager.encode(x, p), compiled.encode(x, p)
        torch.testing.assert_close(fast_planes.tensor, ref_planes.tensor, rtol=1e-4, atol=1e-5 * ref_planes.tensor.std().item())
        cam = Camera.from_yaw_pitch(yaw, 0.1)
        ref, fast = eager.render(ref_planes, cam).image, compiled.render(ref_planes, cam).image
        torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_compiled_editor_does_not_recompile_in_a_pipeline_stage_thread():
    """A stage thread has its own torch thread count and builds cameras under inference mode;
    both are part of the compiled graphs' guards, so `compile(threads)` must match them."""
    import threading

    import torch._dynamo

    editor = _random_editor().compile(threads=1)
    crop = np.full((128, 128, 3), 100, np.uint8)
    errors = []

    def stage():
        torch.set_num_threads(1)
        try:
            with torch.inference_mode(), torch._dynamo.config.patch(error_on_recompile=True):
                tokens = torch.randn(1, 7, editor.config.ref_dim)
                planes = editor.encode(editor.preprocess(crop), PromptEmbedding(tokens, "text", "stage"))
                editor.render(planes, Camera(torch.as_tensor(Camera.from_yaw_pitch(0.2, 0.0).label.numpy())))
        except Exception as err:  # re-raised in the test thread
            errors.append(err)

    t = threading.Thread(target=stage)
    t.start()
    t.join()
    assert not errors, errors


def test_compile_failure_falls_back_to_eager(monkeypatch, caplog):
    def broken_compile(self, *args, **kwargs):
        def fail(*a, **k):
            raise RuntimeError("no C++ compiler")

        self._compiled_call_impl = fail

    monkeypatch.setattr(torch.nn.Module, "compile", broken_compile)
    editor = _random_editor()
    crop = np.full((128, 128, 3), 90, np.uint8)
    expected = editor.edit(crop)
    with caplog.at_level(logging.WARNING):
        editor.compile()
    assert "torch.compile unavailable" in caplog.text and "no C++ compiler" in caplog.text
    np.testing.assert_array_equal(editor.edit(crop), expected)
