"""Edit styles: distinct phrasings, and edits confined to the person (hair styles to hair)."""
from __future__ import annotations

import numpy as np
import pytest

from live3dpe.model.cameras import Camera
from live3dpe.synth.landmarks import Part
from live3dpe.synth.person import sample_person
from live3dpe.synth.render import render
from live3dpe.synth.styles import STYLES, get_style


def test_at_least_twelve_styles_with_8_train_and_5_heldout_phrasings():
    assert len(STYLES) >= 12
    everything = []
    for style in STYLES.values():
        assert len(set(style.train_phrases)) == 8 and len(set(style.heldout_phrases)) == 5 and len(set(style.looks)) >= 4
        assert style.training_texts == (*style.train_phrases, *style.looks)
        assert not set(style.training_texts) & set(style.heldout_phrases)  # held out stays held out
        everything += [*style.training_texts, *style.heldout_phrases]
    assert len(everything) == len(set(everything))  # no text is shared between styles
    with pytest.raises(ValueError):
        get_style("no_such_style")


@pytest.mark.parametrize("name", sorted(STYLES))
def test_style_changes_only_the_person(name):
    person, style = sample_person(11), STYLES[name]
    label = Camera.from_yaw_pitch(0.3, 0.05).label[0].numpy()
    a = render(person, label, 48, supersample=1)
    b = render(style.apply(person), label, 48, supersample=1)
    diff = np.abs(a.image.astype(int) - b.image.astype(int)).sum(-1) > 0
    assert diff.sum() > 20
    assert not diff[~(a.mask | b.mask)].any()
    if style.hair_only:
        assert np.array_equal(a.part, b.part)
        assert not diff[a.part != Part.HAIR].any()
    # apply() returns an edited copy: the original person is unchanged.
    assert np.array_equal(render(person, label, 48, supersample=1).image, a.image)
