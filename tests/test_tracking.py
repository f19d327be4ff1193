"""One-Euro, observation filtering, triplane smoothing and the track state machine."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from live3dpe.pose import observe
from live3dpe.pose.headpose import project_head
from live3dpe.tracking import FaceTrack, ObservationFilter, OneEuroFilter, TrackState, TriplaneSmoother

FPS = 30.0


def _jitter(x):
    return np.std(np.diff(np.asarray(x), axis=0))


def _run(f, xs):
    return np.array([f(x, i / FPS) for i, x in enumerate(xs)])


def test_one_euro_cuts_jitter_of_a_noisy_constant():
    noisy = 5.0 + np.random.default_rng(0).normal(0, 1.0, 300)
    out = _run(OneEuroFilter(min_cutoff=1.0, beta=0.0), noisy)
    assert _jitter(out[30:]) * 5 <= _jitter(noisy[30:])
    assert abs(out[30:].mean() - 5.0) < 0.3  # no bias


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_one_euro_follows_a_step(beta):
    xs = np.r_[np.zeros(30), np.full(60, 10.0)]
    out = _run(OneEuroFilter(min_cutoff=1.0, beta=beta), xs)
    within = np.flatnonzero(np.abs(out[30:] - 10.0) < 0.5)
    assert within.size and within[0] <= 20
    assert np.all(np.abs(out[30 + within[0]:] - 10.0) < 0.5)  # and stays there


def test_one_euro_beta_reduces_lag():
    xs = np.r_[np.zeros(30), np.full(30, 10.0)]
    slow = _run(OneEuroFilter(1.0, 0.0), xs)
    fast = _run(OneEuroFilter(1.0, 1.0), xs)
    assert fast[35] > slow[35] + 1.0


def test_one_euro_arrays_reset_and_bad_input():
    f = OneEuroFilter()
    a = f(np.zeros((4, 2)), 0.0)
    b = f(np.ones((4, 2)), 0.1)
    assert a.shape == b.shape == (4, 2) and 0 < b[0, 0] < 1
    np.testing.assert_array_equal(f(np.full((4, 2), 7.0), 0.1), b)  # same timestamp: unchanged
    with pytest.raises(ValueError, match="shape"):
        f(np.zeros(3), 0.2)
    f.reset()
    np.testing.assert_array_equal(f(np.full(3, 7.0), 0.3), np.full(3, 7.0))
    with pytest.raises(ValueError, match="min_cutoff"):
        OneEuroFilter(min_cutoff=0.0)


def _obs(yaw_deg, rng=None, noise=0.0, x=0.0):
    y = -np.radians(yaw_deg)  # turning the head by -yaw shows it to the camera at +yaw
    R = np.diag([1.0, -1.0, -1.0]) @ np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    lm = project_head(R[None], np.array([[x, 0.0, 50.0]]), 640.0, (319.5, 239.5))[0]
    if noise:
        lm = lm + rng.normal(0, noise, lm.shape)
    return observe(lm, (640, 480))


def test_observation_filter_cuts_pose_jitter_and_keeps_the_measured_crop():
    rng = np.random.default_rng(1)
    raw = [_obs(10.0, rng, noise=1.0) for _ in range(120)]
    filt = ObservationFilter()
    out = [filt(o, i / FPS) for i, o in enumerate(raw)]
    for field in ("yaw", "pitch", "roll"):
        r = np.array([getattr(o, field) for o in raw[30:]])
        s = np.array([getattr(o, field) for o in out[30:]])
        assert _jitter(s) * 5 <= _jitter(r), field
    for r, s in zip(raw, out):  # cut from and pasted into this frame: a filtered crop would lag the head
        np.testing.assert_array_equal(s.crop_affine, r.crop_affine)
        np.testing.assert_array_equal(s.landmarks, r.landmarks)
    last = out[-1]
    ref = observe(raw[0].landmarks, (640, 480))
    assert abs(last.yaw - 10.0) < 1.0
    np.testing.assert_allclose(last.camera.label, ref.camera.label, atol=0.03)
    np.testing.assert_allclose(np.vstack([last.crop_affine, [0, 0, 1]]) @ np.vstack([last.crop_inverse, [0, 0, 1]]), np.eye(3), atol=1e-4)
    np.testing.assert_allclose(last.rotation @ last.rotation.T, np.eye(3), atol=1e-9)


def test_observation_filter_follows_a_turn_and_measures_motion():
    filt = ObservationFilter()
    still = [filt(_obs(0.0), i / FPS) for i in range(20)]
    moving = [filt(_obs(0.0 + 3.0 * i), (20 + i) / FPS) for i in range(1, 11)]  # 90 deg/s
    settle = [filt(_obs(30.0), (30 + i) / FPS) for i in range(1, 31)]
    assert still[-1].motion < 1e-6
    assert moving[-1].motion > 0.1
    within = [i for i, o in enumerate(settle) if abs(o.yaw - 30.0) < 1.0]
    assert within and within[0] <= 15
    filt.reset()
    fresh = _obs(-20.0)
    assert filt.motion == 0.0 and abs(filt(fresh, 100.0).yaw - fresh.yaw) < 1e-9  # no memory


def test_triplane_smoother_reduces_flicker_of_a_static_sequence():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(1, 12, 8, 8, generator=g)
    seq = [base + 0.1 * torch.randn(1, 12, 8, 8, generator=g) for _ in range(60)]
    sm = TriplaneSmoother()
    out = [sm(p, motion=0.0) for p in seq]
    var_in = torch.stack([b - a for a, b in zip(seq[10:], seq[11:])]).var()
    var_out = torch.stack([b - a for a, b in zip(out[10:], out[11:])]).var()
    assert var_out * 4 < var_in
    assert (out[-1] - base).abs().mean() < (seq[-1] - base).abs().mean()


def test_triplane_smoother_follows_motion_and_restarts_on_cuts():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(1, 12, 8, 8, generator=g), torch.randn(1, 12, 8, 8, generator=g)
    sm = TriplaneSmoother(cut_threshold=None)
    ramp = [a + (b - a) * (i / 20) for i in range(21)]
    fast = [sm(p, motion=10.0) for p in ramp]
    torch.testing.assert_close(fast[-1], b)  # fast motion: no ghosting
    sm.reset()
    slow = [sm(p, motion=0.0) for p in ramp]
    assert (slow[-1] - b).abs().mean() > 0.1  # still: it does smooth
    cut = TriplaneSmoother()
    cut(a, 0.0)
    torch.testing.assert_close(cut(b, 0.0), b)  # a different face replaces the average
    assert cut.weight(0.0) < cut.weight(0.25) < cut.weight(5.0) == 1.0


class _Counter:
    def __init__(self):
        self.n = 0

    def reset(self):
        self.n += 1


def test_face_track_states_grace_and_resets():
    obs = _obs(5.0)
    counter = _Counter()
    track = FaceTrack(grace_s=0.5, resets=[counter])
    assert track.state is TrackState.ACQUIRING
    assert track.update(None, 0.0) is None and track.state is TrackState.ACQUIRING
    assert track.update(obs, 0.1) is obs and track.state is TrackState.TRACKING and track.reacquired
    assert counter.n == 1
    assert track.update(obs, 0.2) is obs and not track.reacquired
    assert track.update(None, 0.3) is obs and track.state is TrackState.LOST  # held
    assert track.update(None, 0.7) is obs
    assert track.update(obs, 0.75) is obs and counter.n == 1  # back within grace: no reset
    track.update(None, 0.8)
    assert track.update(None, 1.4) is None and track.state is TrackState.ACQUIRING
    assert track.update(obs, 1.5) is obs and track.reacquired and counter.n == 2
    with pytest.raises(ValueError, match="grace_s"):
        FaceTrack(grace_s=-1)


def test_planes_smoother_smooths_the_colour_edit_field_that_decides_paste_mode():
    from live3dpe.model.types import Guide, Planes
    from live3dpe.tracking import PlanesSmoother

    g = torch.Generator().manual_seed(0)
    triplane, edit = torch.randn(1, 6, 8, 8, generator=g), torch.randn(1, 12, 4, 4, generator=g) * 0.05
    guide_image, label = torch.zeros(1, 3, 16, 16), torch.zeros(1, 25)
    smoother = PlanesSmoother()
    outs = []
    for _ in range(30):  # a still face: only noise changes between frames
        noisy = Planes(triplane + 0.05 * torch.randn(triplane.shape, generator=g), guide=Guide(guide_image, label, edit + 0.02 * torch.randn(edit.shape, generator=g)))
        out = smoother(noisy, motion=0.0)
        assert out.guide.image is guide_image and out.guide.label is label
        outs.append(out.guide.edit)
    raw_flicker = 0.02 * math.sqrt(2)  # std of the difference of two noisy fields
    smooth_flicker = torch.stack([(a - b).std() for a, b in zip(outs[10:], outs[11:])]).mean()
    assert smooth_flicker < 0.5 * raw_flicker
    # a cut of the triplane restarts the field's average too
    cut = smoother(Planes(triplane * -5, guide=Guide(guide_image, label, edit * 3)), motion=0.0)
    assert torch.equal(cut.guide.edit, edit * 3)
    plain = smoother(Planes(triplane), motion=0.0)
    assert plain.guide is None


def test_planes_smoother_keeps_smoothing_the_field_when_no_geometry_is_computed():
    from live3dpe.model.types import Guide, Planes
    from live3dpe.tracking import PlanesSmoother

    smoother, image, label = PlanesSmoother(), torch.zeros(1, 3, 8, 8), torch.zeros(1, 25)
    first = smoother(Planes(None, Guide(image, label, torch.zeros(1, 12, 2, 2))), motion=0.0)
    second = smoother(Planes(None, Guide(image, label, torch.ones(1, 12, 2, 2))), motion=0.0)
    assert first.tensor is None and second.tensor is None
    assert torch.allclose(second.guide.edit, torch.full((1, 12, 2, 2), smoother.edit.min_weight))  # blended, not restarted
