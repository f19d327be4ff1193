"""What a checkpoint knows: the styles it was trained on, and how near a typed prompt is to them.

Users type free text, but a trained checkpoint only learned the styles listed in its metadata
(`training["styles_trained"]`). This module names those styles and matches a prompt to the
nearest one with the editor's own text back-end (pooled sentence embedding, cosine similarity,
max over each style's training texts: phrasings and looks), so the CLI, the gradio app and the WebRTC page can say
"nearest known style ..." and warn when nothing is near. Checkpoints that do not record their
styles (official or random weights) give `None`: unknown, said once, never warned about.

Threshold, measured with MiniLM (the bundled model's back-end) against its 11 styles:
held-out phrases (`Style.heldout_phrases`, 55) score 0.54-0.97 against their own style (mean
0.75; 53/55 have their own style as the nearest); unrelated prompts score at most 0.44 ("a photo
of a cat" 0.34, "make it look like a banana" 0.44, "asdf" 0.32, "hello" 0.33, "a dog" 0.36,
"turn into a pirate" 0.44). 0.5 sits between the two. The looks make descriptions land right:
"green skin" -> zombie (0.75; blue skin with the phrasings alone), "grey stone statue" -> marble. Style-like requests the model never saw
land near it ("make him an elf" 0.56 -> pale vampire, "make it a watercolor painting" 0.60 ->
pop art): they pass, with the style they will actually get named in the message.
"""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from .text_prompt import TextBackend

log = logging.getLogger(__name__)

SIMILARITY_THRESHOLD = 0.5  # below: "the model does not know this style" (figures in the module docstring)
UNKNOWN_NOTE = "this model does not record which styles it was trained on; any text is tried as it is"


@dataclass(frozen=True)
class KnownStyle:
    """One trained style: its catalogue name, the phrases it was trained with, one to show."""

    name: str  # catalogue key, e.g. "golden_statue"
    phrases: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")

    @property
    def example(self) -> str:
        return self.phrases[0]


def known_styles(training: Mapping[str, Any] | None) -> tuple[KnownStyle, ...] | None:
    """The styles a checkpoint's `training` metadata lists, or None when it lists none (unknown).

    A listed name missing from the catalogue still counts, matched by its own label."""
    from live3dpe.synth.styles import STYLES

    names = (training or {}).get("styles_trained")
    if not names:
        return None
    styles = []
    for name in names:
        style = STYLES.get(name)
        styles.append(KnownStyle(name, style.training_texts if style else (name.replace("_", " "),)))
    return tuple(styles)


def checkpoint_known_styles(path: str | Path) -> tuple[KnownStyle, ...] | None:
    """Known styles from a checkpoint's JSON sidecar: no tensors, no network (for `--help`).

    A missing or unreadable sidecar is "unknown", not an error: help text must always print."""
    try:
        meta = json.loads(Path(path).with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    return known_styles(meta.get("training") if isinstance(meta, dict) else None)


def bundled_known_styles() -> tuple[KnownStyle, ...] | None:
    """Known styles of the bundled default model (whichever `DEFAULT_WEIGHTS` points at)."""
    from .editor import DEFAULT_WEIGHTS

    return checkpoint_known_styles(DEFAULT_WEIGHTS)


def styles_line(styles: Sequence[KnownStyle] | None) -> str:
    """One line naming the known styles, for help texts and pages."""
    if not styles:
        return f"known styles: unknown ({UNKNOWN_NOTE})"
    return f"known styles: {', '.join(s.label for s in styles)}; other text is matched to the nearest of them"


def prompt_help_epilog() -> str:
    """The `--help` epilog of every command that takes `--prompt`."""
    from .editor import DEFAULT_WEIGHTS

    if not DEFAULT_WEIGHTS.is_file():
        return f"known styles: unknown (no bundled model at {DEFAULT_WEIGHTS.name}: the default runs on random weights)."
    return f"The bundled model's {styles_line(bundled_known_styles())}."


@dataclass(frozen=True)
class StyleMatch:
    """A prompt's nearest known style and how near it is."""

    prompt: str
    style: KnownStyle
    similarity: float

    @property
    def known(self) -> bool:
        return self.similarity >= SIMILARITY_THRESHOLD

    def message(self) -> str:
        line = f'prompt "{self.prompt}" → nearest known style "{self.style.label}" (similarity {self.similarity:.2f})'
        if not self.known:
            line += "; the model does not know this style; the output will be a weak or arbitrary edit"
        return line

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for the web pages."""
        return {
            "prompt": self.prompt,
            "style": self.style.name,
            "label": self.style.label,
            "similarity": round(self.similarity, 3),
            "known": self.known,
            "message": self.message(),
        }


class StyleMatcher:
    """Matches prompts to `styles` with `backend`; the phrase embeddings are computed on first use."""

    def __init__(self, styles: Sequence[KnownStyle], backend: TextBackend) -> None:
        if not styles:
            raise ValueError("a StyleMatcher needs at least one known style")
        self.styles = tuple(styles)
        self.backend = backend
        self._lock = threading.Lock()
        self._bank: tuple[torch.Tensor, list[int]] | None = None  # [P, D] unit rows, style index per row

    def _embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit pooled embeddings [N, D]; one padded pass where the back-end offers it (HF back-ends)."""
        import torch

        batched = getattr(self.backend, "encode_pooled", None)
        if batched is not None:
            pooled = batched(list(texts)).float().cpu()
        else:
            pooled = torch.cat([self.backend.encode(t).pooled.float().cpu() for t in texts])
        return pooled / pooled.norm(dim=1, keepdim=True).clamp_min(1e-8)

    def _phrases(self) -> tuple[torch.Tensor, list[int]]:
        with self._lock:
            if self._bank is None:
                bank = self._embed([p for s in self.styles for p in s.phrases])
                self._bank = (bank, [i for i, s in enumerate(self.styles) for _ in s.phrases])
            return self._bank

    def similarities_many(self, prompts: Sequence[str]) -> list[dict[str, float]]:
        """Per prompt: style name -> max cosine similarity to that style's training phrases."""
        bank, owner = self._phrases()
        out = []
        for row in (self._embed(prompts) @ bank.T).tolist():
            best: dict[str, float] = {}
            for sim, i in zip(row, owner):
                name = self.styles[i].name
                best[name] = max(best.get(name, -1.0), sim)
            out.append(best)
        return out

    def similarities(self, prompt_text: str) -> dict[str, float]:
        return self.similarities_many([prompt_text])[0]

    def match_many(self, prompts: Sequence[str]) -> list[StyleMatch]:
        """The nearest known style of each prompt (one encoder pass for all of them)."""
        matches = []
        for text, sims in zip(prompts, self.similarities_many(prompts)):
            style = max(self.styles, key=lambda s: sims[s.name])
            matches.append(StyleMatch(text.strip(), style, sims[style.name]))
        return matches

    def match(self, prompt_text: str) -> StyleMatch:
        return self.match_many([prompt_text])[0]

    def nearest_style(self, prompt_text: str) -> tuple[KnownStyle, float]:
        """(nearest known style, its similarity) for one prompt."""
        m = self.match(prompt_text)
        return m.style, m.similarity


_matchers: dict[tuple, StyleMatcher] = {}
_matchers_lock = threading.Lock()


def editor_known_styles(editor) -> tuple[KnownStyle, ...] | None:
    """Known styles of a loaded `Editor` (None for random weights or unrecorded training)."""
    meta = getattr(editor, "meta", None)
    return known_styles(meta.training if meta is not None else None)


def editor_matcher(editor) -> StyleMatcher | None:
    """The (shared, cached) matcher for an editor: None when its styles are unknown or it has no
    text back-end. Cached by back-end name + styles, so phrase embeddings are computed once."""
    styles = editor_known_styles(editor)
    backend = getattr(editor, "text_backend", None)
    if not styles or backend is None:
        return None
    key = (backend.name, styles)
    with _matchers_lock:
        if key not in _matchers:
            _matchers[key] = StyleMatcher(styles, backend)
        return _matchers[key]


def check_prompt(editor, prompt_text: str | None) -> StyleMatch | None:
    """The nearest known style for a text prompt, or None (no text, or the styles are unknown)."""
    if not prompt_text or not prompt_text.strip():
        return None
    matcher = editor_matcher(editor)
    return matcher.match(prompt_text) if matcher is not None else None


def prompt_feedback(editor, prompt_text: str | None) -> dict[str, Any] | None:
    """What the web pages show for a typed prompt (JSON-able); None for no text."""
    if not prompt_text or not prompt_text.strip():
        return None
    match = check_prompt(editor, prompt_text)
    if match is not None:
        return match.to_dict()
    return {"prompt": prompt_text.strip(), "style": None, "label": None, "similarity": None, "known": None, "message": UNKNOWN_NOTE}


def styles_payload(styles: Sequence[KnownStyle] | None) -> dict[str, Any]:
    """The known styles as the web pages get them (`styles` None: unknown)."""
    listed = None if styles is None else [{"name": s.name, "label": s.label, "example": s.example} for s in styles]
    return {"known_styles": listed, "line": styles_line(styles)}


def log_prompt_check(editor, prompt_text: str | None, logger: logging.Logger = log) -> StyleMatch | None:
    """Log the one line a run starts with: the nearest style, or a warning when nothing is near."""
    if not prompt_text or not prompt_text.strip():
        return None
    match = check_prompt(editor, prompt_text)
    if match is None:
        if editor_known_styles(editor) is None:
            logger.info('prompt "%s": %s', prompt_text.strip(), UNKNOWN_NOTE)
    elif match.known:
        logger.info("%s", match.message())
    else:
        logger.warning("%s", match.message())
    return match
