"""The random parameters of one synthetic person: shape, appearance, lighting, backdrop.

Everything a render needs is sampled here once, from one numpy Generator, so a seed
names a person. Styles (see `styles`) return modified copies of `Appearance` (and of
`Shape` props); the geometry and the light stay, which is what makes an edit 3D.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

RGB = tuple[float, float, float]

_SKIN_TONES = np.array(
    [[0.96, 0.80, 0.69], [0.92, 0.73, 0.60], [0.85, 0.64, 0.50], [0.76, 0.55, 0.40], [0.62, 0.42, 0.29], [0.45, 0.30, 0.21], [0.33, 0.22, 0.16]]
)
_HAIR_COLOURS = np.array(
    [[0.08, 0.06, 0.05], [0.20, 0.13, 0.08], [0.36, 0.24, 0.14], [0.55, 0.40, 0.24], [0.80, 0.66, 0.42], [0.55, 0.25, 0.12], [0.60, 0.60, 0.60]]
)
_IRIS_COLOURS = np.array([[0.30, 0.18, 0.10], [0.45, 0.30, 0.15], [0.25, 0.40, 0.55], [0.30, 0.45, 0.30], [0.18, 0.12, 0.08]])


@dataclass(frozen=True, eq=False)
class Shape:
    """Geometry parameters (centimetres unless noted)."""

    scale: float = 1.0  # overall size
    stretch: RGB = (1.0, 1.0, 1.0)  # per-axis head proportions
    warp_freq: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # [K, 3] rad/cm smooth warp waves
    warp_phase: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [K]
    warp_amp: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # [K, 3] cm
    nose_scale: float = 1.0
    jaw_width: float = 1.0
    chin_length: float = 0.0
    skull: RGB = (7.4, 10.0, 10.0)  # cranium semi-axes
    ear_size: float = 1.0
    neck_width: float = 1.0
    hair_thickness: float = 1.0
    hair_volume: float = 0.5  # extra height on the crown
    hairline_front: float = 0.55  # elevation (rad) of the hairline above the forehead
    hairline_side: float = 0.1
    hairline_back: float = -0.5
    hair_length: float = 0.0  # how far long hair hangs below the skull
    nose_ball: float = 0.0  # radius of a prop sphere on the nose tip (clown), 0 = none


@dataclass(frozen=True, eq=False)
class Appearance:
    """Colours (linear-ish RGB in [0, 1]) and material switches read by the shader."""

    skin: RGB = (0.85, 0.64, 0.5)
    skin_variation: float = 0.04
    lips: RGB = (0.7, 0.35, 0.35)
    brows: RGB = (0.2, 0.13, 0.08)
    brow_thickness: float = 1.0
    iris: RGB = (0.3, 0.18, 0.1)
    sclera: RGB = (0.93, 0.91, 0.88)
    lash: RGB = (0.08, 0.06, 0.05)
    blush: float = 0.15
    hair: RGB = (0.2, 0.13, 0.08)
    hair_streaks: float = 0.25
    cloth: RGB = (0.3, 0.35, 0.5)
    mouth: RGB = (0.25, 0.07, 0.07)
    prop: RGB = (0.9, 0.05, 0.05)
    eye_socket: float = 0.1  # darkening around the eyes
    blank_eyes: bool = False  # statues: no iris, eyes take the skin material
    face_paint: str = ""  # named make-up painted over the face texture ("clown")
    specular: float = 0.05
    shininess: float = 20.0
    metallic: float = 0.0  # 1 = highlights tinted by the albedo
    rim: float = 0.0  # neon rim glow strength
    rim_color: RGB = (0.0, 1.0, 1.0)
    veins: float = 0.0  # marble veining strength
    posterize: tuple[RGB, ...] = ()  # pop-art: shade levels mapped to these colours (dark -> light)
    sketch: float = 0.0  # charcoal: greyscale, hatching and contour darkening


@dataclass(frozen=True, eq=False)
class Lighting:
    """One directional light (world frame, pointing from the surface to the light) plus ambient."""

    direction: RGB = (0.3, 0.4, 0.85)
    ambient: float = 0.4
    diffuse: float = 0.7
    color: RGB = (1.0, 0.98, 0.95)


@dataclass(frozen=True, eq=False)
class Person:
    """A sampled person. `seed` drives the fine detail noise (skin mottling, streaks)."""

    shape: Shape
    appearance: Appearance
    lighting: Lighting
    background: tuple[RGB, RGB] = ((0.6, 0.6, 0.6), (0.4, 0.4, 0.4))  # top, bottom of a vertical gradient
    seed: int = 0

    def replace(self, **changes) -> Person:
        return dataclasses.replace(self, **changes)


def _jitter(rng: np.random.Generator, colour: np.ndarray, amount: float) -> RGB:
    return tuple(np.clip(colour + rng.normal(0, amount, 3), 0, 1).tolist())


def _unit(v: np.ndarray) -> RGB:
    return tuple((v / np.linalg.norm(v)).tolist())


def sample_person(rng: np.random.Generator | int) -> Person:
    """Draw a random person. Accepts a Generator or an integer seed."""
    rng = np.random.default_rng(rng)
    k = 4
    dirs = rng.normal(size=(k, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    long_hair = rng.random() < 0.4
    shape = Shape(
        scale=float(rng.uniform(0.94, 1.06)),
        stretch=(float(rng.uniform(0.92, 1.08)), float(rng.uniform(0.95, 1.05)), float(rng.uniform(0.95, 1.05))),
        warp_freq=dirs * rng.uniform(0.15, 0.35, (k, 1)),
        warp_phase=rng.uniform(0, 2 * np.pi, k),
        warp_amp=rng.normal(0, 0.25, (k, 3)),
        nose_scale=float(rng.uniform(0.85, 1.2)),
        jaw_width=float(rng.uniform(0.9, 1.1)),
        chin_length=float(rng.uniform(-0.5, 0.7)),
        skull=(float(rng.uniform(7.1, 7.8)), float(rng.uniform(9.5, 10.5)), float(rng.uniform(9.5, 10.5))),
        ear_size=float(rng.uniform(0.85, 1.15)),
        neck_width=float(rng.uniform(0.9, 1.15)),
        hair_thickness=float(rng.uniform(0.5, 1.6)),
        hair_volume=float(rng.uniform(0.0, 2.0)),
        hairline_front=float(rng.uniform(0.45, 0.75)),
        hairline_side=float(rng.uniform(-0.05, 0.2)),
        hairline_back=float(rng.uniform(-0.7, -0.35)),
        hair_length=float(rng.uniform(8.0, 18.0)) if long_hair else 0.0,
    )
    t = rng.random() * (len(_SKIN_TONES) - 1)
    i = int(t)
    skin = _SKIN_TONES[i] * (1 - (t - i)) + _SKIN_TONES[i + 1] * (t - i)
    hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS) - 1)]  # grey is kept for the style
    appearance = Appearance(
        skin=_jitter(rng, skin, 0.02),
        skin_variation=float(rng.uniform(0.02, 0.06)),
        lips=_jitter(rng, skin * np.array([0.85, 0.55, 0.58]), 0.03),
        brows=_jitter(rng, np.minimum(hair, skin * 0.45), 0.02),
        brow_thickness=float(rng.uniform(0.8, 1.3)),
        iris=_jitter(rng, _IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))], 0.03),
        blush=float(rng.uniform(0.05, 0.25)),
        hair=_jitter(rng, hair, 0.03),
        hair_streaks=float(rng.uniform(0.15, 0.35)),
        cloth=tuple(rng.uniform(0.1, 0.8, 3).tolist()),
        eye_socket=float(rng.uniform(0.05, 0.15)),
    )
    light = Lighting(
        direction=_unit(np.array([rng.uniform(-0.8, 0.8), rng.uniform(-0.1, 0.8), rng.uniform(0.5, 1.0)])),
        ambient=float(rng.uniform(0.3, 0.5)),
        diffuse=float(rng.uniform(0.55, 0.8)),
        color=_jitter(rng, np.array([1.0, 0.97, 0.93]), 0.02),
    )
    top = rng.uniform(0.2, 0.9, 3)
    bottom = np.clip(top + rng.normal(0, 0.12, 3), 0, 1) if rng.random() < 0.7 else top
    seed = int(rng.integers(2**31))
    return Person(shape, appearance, light, (tuple(top.tolist()), tuple(bottom.tolist())), seed)
