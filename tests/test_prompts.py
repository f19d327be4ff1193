"""Text back-ends, the text projection, and the prompt cache."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from tiny_clip import save_tiny_clip  # tests/ is on sys.path (rootdir-relative import mode)

from live3dpe.model.config import TINY
from live3dpe.model.prompts import PromptCache, PromptEncoder, image_digest
from live3dpe.model.text_prompt import (
    MINILM_DIM,
    CLIPTextBackend,
    MiniLMTextBackend,
    TextFeatures,
    TextPromptProjection,
    make_text_backend,
)
from live3dpe.model.types import PromptEmbedding


@pytest.fixture(scope="module")
def minilm() -> MiniLMTextBackend:
    return MiniLMTextBackend()


def test_minilm_offline_deterministic_and_prompt_dependent(minilm, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    a1 = minilm.encode("a smiling elf with pointy ears")
    a2 = minilm.encode("a smiling elf with pointy ears")
    b = minilm.encode("a zombie")
    assert a1.tokens.shape[0] == 1 and a1.tokens.shape[-1] == MINILM_DIM
    assert a1.pooled.shape == (1, MINILM_DIM)
    assert torch.equal(a1.tokens, a2.tokens) and torch.equal(a1.pooled, a2.pooled)
    assert torch.isfinite(a1.tokens).all()
    assert not torch.allclose(a1.pooled, b.pooled, atol=1e-3)
    # the pooled vector is the masked token mean (sentence-transformers pooling)
    torch.testing.assert_close(a1.pooled, a1.tokens.mean(1))


def test_minilm_threads_long_text_and_autograd(minilm):
    prompts = [f"portrait number {i} as a marble statue" for i in range(4)]
    results: dict[str, TextFeatures] = {}
    threads = [threading.Thread(target=lambda p=p: results.__setitem__(p, minilm.encode(p))) for p in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in prompts:  # same result as a lone call (intra-op thread counts may differ per thread: not bit-exact)
        torch.testing.assert_close(results[p].tokens, minilm.encode(p).tokens, rtol=1e-5, atol=1e-5)
    long = minilm.encode("face " * 2000)
    assert long.tokens.shape[1] <= 512  # truncated to the model's positions, no error
    # features are ordinary tensors: the projection trains on them
    proj = TextPromptProjection(MINILM_DIM, TINY.ref_dim)
    proj(long.tokens, long.pooled).square().mean().backward()
    assert proj.token_proj.weight.grad is not None


def test_empty_text_rejected(minilm):
    with pytest.raises(ValueError, match="non-empty"):
        minilm.encode("   ")


def test_projection_shapes_and_validation():
    proj = TextPromptProjection(MINILM_DIM, TINY.ref_dim, num_slots=3)
    out = proj(torch.randn(2, 7, MINILM_DIM), torch.randn(2, MINILM_DIM))
    assert out.shape == (2, 3 + 7, TINY.ref_dim)
    with pytest.raises(ValueError, match="text tokens"):
        proj(torch.randn(1, 7, 100), torch.randn(1, 100))
    with pytest.raises(ValueError, match="pooled"):
        proj(torch.randn(1, 7, MINILM_DIM), torch.randn(2, MINILM_DIM))


def test_clip_local_dir_backend(tmp_path):
    save_tiny_clip(tmp_path)
    backend = make_text_backend(f"clip:{tmp_path}")
    assert isinstance(backend, CLIPTextBackend)
    assert backend.dim == 32 and backend.name == f"clip:{tmp_path.resolve()}"
    a = backend.encode("a smile")
    assert a.tokens.shape == (1, 6, 32)  # bos + a + sm + i + le + eos
    assert a.pooled.shape == (1, 32)
    assert torch.equal(a.tokens, backend.encode("a smile").tokens)
    assert not torch.allclose(a.pooled, backend.encode("smile smile").pooled)
    proj = TextPromptProjection(backend.dim, TINY.ref_dim)
    assert proj(a.tokens, a.pooled).shape == (1, 4 + 6, TINY.ref_dim)


def test_backend_spec_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown text back-end"):
        make_text_backend("bert")
    with pytest.raises(FileNotFoundError, match="config.json"):
        make_text_backend(f"clip:{tmp_path / 'missing'}")


def _embedding(tag: str) -> PromptEmbedding:
    return PromptEmbedding(torch.zeros(1, 1, 1), "text", tag)


def test_cache_hit_skips_encoder_and_is_lru():
    cache = PromptCache(max_entries=2)
    calls = []

    def make(tag):
        calls.append(tag)
        return _embedding(tag)

    a = cache.get_or_create(("a",), lambda: make("a"))
    assert cache.get_or_create(("a",), lambda: make("a")) is a
    cache.get_or_create(("b",), lambda: make("b"))
    cache.get_or_create(("a",), lambda: make("a"))  # a is now most recent
    cache.get_or_create(("c",), lambda: make("c"))  # evicts b
    cache.get_or_create(("b",), lambda: make("b"))
    assert calls == ["a", "b", "c", "b"]
    assert len(cache) == 2


def test_cache_concurrent_requests_encode_once():
    cache = PromptCache()
    calls = []
    gate = threading.Event()

    def slow():
        calls.append(1)
        gate.wait(5)
        return _embedding("x")

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_create(("x",), slow))) for _ in range(4)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert all(r is results[0] for r in results)


def test_cache_failed_encode_is_not_cached():
    cache = PromptCache()

    def boom():
        raise RuntimeError("encoder failed")

    with pytest.raises(RuntimeError):
        cache.get_or_create(("k",), boom)
    assert cache.get_or_create(("k",), lambda: _embedding("k")).key == "k"


class CountingBackend:
    """A stand-in frozen back-end that counts how often it runs."""

    name = "counting"
    dim = 8

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, text: str) -> TextFeatures:
        self.calls += 1
        g = torch.Generator().manual_seed(len(text))
        return TextFeatures(torch.randn(1, 3, self.dim, generator=g), torch.randn(1, self.dim, generator=g))


class PromptNet(torch.nn.Module):
    """Only the prompt side of EditorNet, so these tests do not depend on the full network."""

    def __init__(self) -> None:
        super().__init__()
        from live3dpe.model.image_prompt import ImagePromptEncoder

        self.image_prompt = ImagePromptEncoder(TINY)
        self.text_prompt = TextPromptProjection(CountingBackend.dim, TINY.ref_dim, backend=CountingBackend.name)


def test_prompt_encoder_text_and_image_cached():
    backend = CountingBackend()
    enc = PromptEncoder(PromptNet().eval(), backend, weights_version="w1")
    t1 = enc(text="elf")
    assert enc(text="elf") is t1 and backend.calls == 1
    assert t1.source == "text" and t1.tokens.shape == (1, 4 + 3, TINY.ref_dim)
    assert enc(text="zombie") is not t1 and backend.calls == 2

    img = np.random.default_rng(0).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    i1 = enc(image=img)
    grid = TINY.ref_resolution // TINY.ref_patch
    assert i1.source == "image" and i1.tokens.shape == (1, 1 + grid * grid, TINY.ref_dim)
    assert enc(image=img.copy()) is i1
    assert image_digest(img) in i1.key

    enc.weights_version = "w2"  # new weights: nothing stale is served
    assert enc(text="elf") is not t1 and backend.calls == 3


def test_prompt_encoder_errors():
    enc = PromptEncoder(PromptNet().eval(), CountingBackend(), weights_version="w")
    with pytest.raises(ValueError, match="exactly one"):
        enc()
    with pytest.raises(ValueError, match="exactly one"):
        enc(text="a", image=np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        enc(image=np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        enc(image=np.zeros((8, 8), np.uint8))
    no_text = PromptEncoder(PromptNet().eval(), None, weights_version="w")
    with pytest.raises(RuntimeError, match="no text back-end"):
        no_text(text="elf")
    with pytest.raises(ValueError, match="'minilm' given.*trained on 'counting'"):
        PromptEncoder(PromptNet().eval(), MiniLMTextBackend(), weights_version="w")

    class Resized(CountingBackend):  # same name, another model behind it
        dim = 16

    wrong_dim = PromptEncoder(PromptNet().eval(), Resized(), weights_version="w")
    with pytest.raises(ValueError, match="expects 8-d"):
        wrong_dim(text="elf")
