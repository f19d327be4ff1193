"""Colour, sharpness and spread of the face region of aligned portraits, for real-face evaluation.

Every image is brought to one size (`FACE_SIZE`) before it is measured, so figures do not move
when the model's output resolution does. The face region is a fixed central ellipse of the
aligned crop. These definitions match `shared/tools/realface_check.py` (the project's external
measuring stick), so the two tools' figures can be compared directly.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

FACE_SIZE = 512
LAB_KEYS = ("L", "a", "b", "chroma", "Lstd")
REFERENCE_KEYS = ("L", "a", "b", "Lstd")  # the colour statistics a reference prompt should move


@lru_cache(maxsize=4)
def face_mask(size: int = FACE_SIZE) -> np.ndarray:
    """The face region of an aligned crop: ellipse at (0.5, 0.55) of the side, semi-axes 0.22 x 0.30."""
    m = np.zeros((size, size), np.uint8)
    cv2.ellipse(m, (size // 2, int(size * 0.55)), (int(size * 0.22), int(size * 0.30)), 0, 0, 360, 1, -1)
    m = m.astype(bool)
    m.flags.writeable = False
    return m


def at_face_size(image: np.ndarray, size: int = FACE_SIZE) -> np.ndarray:
    """A square uint8 RGB image resized to `size` (cubic up, area down)."""
    if image.shape[0] != image.shape[1]:
        raise ValueError(f"face images must be square, got {image.shape[1]}x{image.shape[0]}")
    if image.shape[0] == size:
        return image
    interp = cv2.INTER_CUBIC if image.shape[0] < size else cv2.INTER_AREA
    return cv2.resize(image, (size, size), interpolation=interp)


def _checked(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    if image.shape[:2] != mask.shape:
        raise ValueError(f"image {image.shape[:2]} and face mask {mask.shape} differ: resize with at_face_size first")
    return image


def lab_stats(image: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """CIELAB statistics of the face region: mean L (0-100), a, b; chroma of the mean colour; L spread."""
    mask = face_mask(image.shape[0]) if mask is None else mask
    lab = cv2.cvtColor(_checked(image, mask), cv2.COLOR_RGB2LAB).astype(np.float32)
    L = lab[..., 0][mask] * (100.0 / 255.0)
    a = float((lab[..., 1][mask] - 128).mean())
    b = float((lab[..., 2][mask] - 128).mean())
    return {"L": float(L.mean()), "a": a, "b": b, "chroma": float(np.hypot(a, b)), "Lstd": float(L.std())}


def lab_shift(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in LAB_KEYS}


def sharpness(image: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Variance of the Laplacian inside the face: how much fine detail there is."""
    mask = face_mask(image.shape[0]) if mask is None else mask
    gray = cv2.cvtColor(_checked(image, mask), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F)[mask].var())


def sharpness_ratio(output: np.ndarray, source: np.ndarray) -> float:
    """Detail kept: the output's face sharpness over the source's (1 = as detailed; both at one size)."""
    return sharpness(output) / max(sharpness(source), 1e-6)


@dataclass(frozen=True)
class Expectation:
    """How a style must move the face region: `channel` (a `LAB_KEYS` entry) by at least
    `minimum` (signed: +8 on b = at least 8 units yellower)."""

    channel: str
    minimum: float

    def shift(self, before: dict[str, float], after: dict[str, float]) -> float:
        return after[self.channel] - before[self.channel]

    def met(self, shift: float) -> bool:
        return bool(shift * np.sign(self.minimum) >= abs(self.minimum))

    def __str__(self) -> str:
        return f"{self.channel} {'+' if self.minimum > 0 else '-'}{abs(self.minimum):g}"


# Prompts whose colour effect on the face is unambiguous. Hair-only edits (e.g. red hair) are left
# out on purpose: hair lies outside the face region, so a colour test there would judge nothing.
EXPECTED: dict[str, Expectation] = {
    "golden statue": Expectation("b", +8.0),  # yellower
    "gold statue": Expectation("b", +8.0),
    "bronze statue": Expectation("L", -8.0),  # dark metal
    "blue skin": Expectation("b", -8.0),  # bluer
    "green skin": Expectation("a", -8.0),  # greener
    "marble statue": Expectation("chroma", -8.0),  # greyer
    "silver statue": Expectation("chroma", -8.0),
    "charcoal sketch": Expectation("chroma", -8.0),
    "zombie": Expectation("a", -5.0),  # greener
    "pale vampire": Expectation("L", +5.0),  # paler
    "neon": Expectation("L", -10.0),  # dark skin under neon rims
}
DEFAULT_PROMPTS = ("golden statue", "blue skin", "marble statue", "zombie")


def expectation_for(prompt: str) -> Expectation | None:
    """The expected colour direction of a known style prompt (case and spacing ignored), else None."""
    return EXPECTED.get(" ".join(prompt.lower().split()))


def reference_direction(before: dict[str, float], after: dict[str, float], reference: dict[str, float]) -> tuple[float, float]:
    """(cosine, progress) between the output's and the reference's shift from the input on
    [L, a, b, Lstd]: cosine 1 = moved towards the reference's look; progress 1 = all the way."""
    v_ref = np.array([reference[k] - before[k] for k in REFERENCE_KEYS])
    v_out = np.array([after[k] - before[k] for k in REFERENCE_KEYS])
    cos = float(v_ref @ v_out / (np.linalg.norm(v_ref) * np.linalg.norm(v_out) + 1e-6))
    return cos, float(v_ref @ v_out / (v_ref @ v_ref + 1e-6))


def spread(outputs: list[np.ndarray]) -> float | None:
    """Mean absolute difference (0-255) inside the face between every pair of outputs: near 0 when
    different prompts give the same face. None for fewer than two outputs."""
    if len(outputs) < 2:
        return None
    mask = face_mask(outputs[0].shape[0])
    diffs = [
        float(np.abs(a.astype(np.int16) - b.astype(np.int16))[mask].mean())
        for i, a in enumerate(outputs)
        for b in outputs[i + 1 :]
    ]
    return float(np.mean(diffs))
