"""Evaluation cases from the synthetic world: an input photo, a prompt, and ground truth at every view.

An edit in the synthetic world is a change to the person, so the edited person rendered at
any camera is the exact answer a 3D-aware editor should give there. People and reference
images come from random streams disjoint from the dataset writer's, so they are unseen.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from live3dpe.model.cameras import Camera
from live3dpe.synth.person import sample_person
from live3dpe.synth.render import RenderResult, render
from live3dpe.synth.styles import STYLES, get_style

_PEOPLE_STREAM = 3  # dataset.py draws dataset people from stream 0 and references from stream 1
_REFERENCE_STREAM = 4


@dataclass(frozen=True)
class Case:
    """One person, one edit style, one input view and the ground truth at `yaws`.

    input: the unedited person at `input_label`; teacher_2d: the edited person at the same
    camera (what a perfect 2D editor would output); reference: another person in the style
    (the image prompt); truth[i]: the edited person at camera labels[i] (yaw yaws[i]).
    """

    person: int
    style: str
    phrase: str  # a held-out phrasing of the style (unseen in training)
    input_label: np.ndarray  # [25]
    input: RenderResult
    teacher_2d: RenderResult
    reference: np.ndarray  # uint8 [R, R, 3]
    yaws: np.ndarray  # [V] radians
    labels: np.ndarray  # [V, 25]
    truth: list[RenderResult]

    @property
    def input_index(self) -> int:
        """Index of the view closest to the input camera (the 2D-edit view)."""
        return int(np.argmin(np.abs(self.yaws)))


def view_labels(yaws: np.ndarray, pitch: float = 0.0) -> np.ndarray:
    """Orbit cameras at `yaws` (radians) -> [V, 25]."""
    y = torch.as_tensor(np.asarray(yaws, np.float32))
    return Camera.from_yaw_pitch(y, torch.full_like(y, pitch)).label.numpy()


def make_cases(
    people: int,
    yaws: tuple[float, ...],
    input_resolution: int,
    output_resolution: int,
    styles: tuple[str, ...] | None = None,
    seed: int = 0,
    supersample: int = 3,
) -> list[Case]:
    """`people` cases, person i edited in style i (cycling through `styles`), input at yaw 0."""
    names = tuple(styles or STYLES)
    yaws_arr = np.asarray(yaws, np.float32)
    labels = view_labels(yaws_arr)
    input_label = view_labels(np.zeros(1, np.float32))[0]
    cases = []
    for i in range(people):
        name = names[i % len(names)]
        style = get_style(name)
        rng = np.random.default_rng([seed, _PEOPLE_STREAM, i])
        person = sample_person(rng)
        edited = style.apply(person)
        other = style.apply(sample_person(np.random.default_rng([seed, _REFERENCE_STREAM, i])))
        cases.append(
            Case(
                person=i,
                style=name,
                phrase=style.heldout_phrases[int(rng.integers(len(style.heldout_phrases)))],
                input_label=input_label,
                input=render(person, input_label, input_resolution, supersample=supersample),
                teacher_2d=render(edited, input_label, input_resolution, supersample=supersample),
                reference=render(other, input_label, input_resolution, supersample=supersample).image,
                yaws=yaws_arr,
                labels=labels,
                truth=[render(edited, lab, output_resolution, supersample=supersample) for lab in labels],
            )
        )
    return cases
