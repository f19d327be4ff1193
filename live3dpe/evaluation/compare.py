"""Table 1 in the synthetic world: each method's renders scored against the edited ground truth.

Per case and view: PSNR (whole image and face), SSIM, depth error, multi-view consistency
(the view warped into the input view by the method's own depth), and, when weights are
supplied, ArcFace identity with the input and CLIP similarity with the reference and the
truth. The `ground_truth` row scores the truth against itself: the ceiling of each metric.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from live3dpe.evaluation.learned import ImageSimilarity, Unavailable
from live3dpe.evaluation.methods import Views, encode_and_render
from live3dpe.evaluation.metrics import depth_error, psnr, reprojection_consistency, ssim
from live3dpe.evaluation.world import Case
from live3dpe.model.editor import Editor

log = logging.getLogger(__name__)

METHODS = ("3dpe_image", "3dpe_text", "2d_then_3d", "reconstruction", "ground_truth")
METRICS = ("psnr", "psnr_face", "ssim", "depth_abs", "consistency", "identity", "clip_reference", "clip_truth", "edit_ms")


@dataclass(frozen=True)
class LearnedMetrics:
    """The weight-based metrics, each either runnable or `Unavailable` with its reason."""

    identity: ImageSimilarity | Unavailable
    clip: ImageSimilarity | Unavailable

    def notes(self) -> dict[str, str]:
        """metric name -> reason, for the unavailable ones."""
        out = {}
        if isinstance(self.identity, Unavailable):
            out["identity"] = self.identity.reason
        if isinstance(self.clip, Unavailable):
            out["clip_reference"] = out["clip_truth"] = self.clip.reason
        return out


def score_views(case: Case, views: Views | None, learned: LearnedMetrics) -> list[dict]:
    """Metrics per view of one method on one case (`views=None` scores the ground truth itself)."""
    images = np.stack([t.image for t in case.truth]) if views is None else views.images
    depths = np.stack([t.depth for t in case.truth]) if views is None else views.depths
    a = case.input_index
    face_a = case.truth[a].mask
    rows = []
    for i, truth in enumerate(case.truth):
        img = images[i]
        f32, t32 = img.astype(np.float32) / 255, truth.image.astype(np.float32) / 255
        fg = truth.mask & np.isfinite(truth.depth)
        row: dict = {
            "psnr": psnr(f32, t32),
            "psnr_face": psnr(f32, t32, truth.mask) if truth.mask.any() else None,
            "ssim": ssim(f32, t32),
            # background depth is inf in the truth: zero it outside `fg` so no inf - inf is formed
            "depth_abs": depth_error(np.where(fg, depths[i], 0), np.where(fg, truth.depth, 0), fg)["abs"] if fg.any() else None,
            "consistency": None,
            "identity": None,
            "clip_reference": None,
            "clip_truth": None,
            "edit_ms": None if views is None else views.edit_ms,
        }
        if i != a and face_a.any():
            row["consistency"] = reprojection_consistency(
                images[a].astype(np.float32) / 255, depths[a], case.labels[a], f32, case.labels[i], face_a
            )
        if not isinstance(learned.identity, Unavailable):
            row["identity"] = learned.identity.similarity(img, case.input.image)
        if not isinstance(learned.clip, Unavailable):
            row["clip_reference"] = learned.clip.similarity(img, case.reference)
            row["clip_truth"] = learned.clip.similarity(img, truth.image)
        rows.append(row)
    return rows


def run_comparison(editor: Editor, cases: list[Case], learned: LearnedMetrics, text: bool = True) -> list[dict]:
    """Every method on every case -> one record per (method, case, view) with its metrics."""
    if text and editor.text_backend is None:
        log.warning("no text back-end: skipping the text-prompt rows")
        text = False
    records = []
    for case in cases:
        runs: dict[str, Views | None] = {
            "3dpe_image": encode_and_render(editor, case.input.image, editor.encode_prompt(image=case.reference), case.labels, case.input_label),
        }
        if text:
            runs["3dpe_text"] = encode_and_render(editor, case.input.image, editor.encode_prompt(text=case.phrase), case.labels, case.input_label)
        runs["2d_then_3d"] = encode_and_render(editor, case.teacher_2d.image, None, case.labels, case.input_label)
        runs["reconstruction"] = encode_and_render(editor, case.input.image, None, case.labels, case.input_label)
        runs["ground_truth"] = None
        for method, views in runs.items():
            for yaw, row in zip(case.yaws, score_views(case, views, learned)):
                records.append({"method": method, "person": case.person, "style": case.style, "yaw_deg": round(math.degrees(float(yaw)), 2), **row})
        log.info("case %d (%s) done", case.person, case.style)
    return records


def _mean(values: list) -> float | None:
    v = [float(x) for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return None
    return float("inf") if all(math.isinf(x) for x in v) else float(np.mean([x for x in v if not math.isinf(x)]))


def summarize(records: list[dict]) -> dict:
    """{"table": {method: {metric: mean}}, "by_yaw": {method: {yaw_deg: {metric: mean}}}}.

    Means skip views where a metric does not apply (consistency at the input view) and are
    inf only when every value is (the ground truth against itself)."""
    methods = [m for m in METHODS if any(r["method"] == m for r in records)]
    table, by_yaw = {}, {}
    for m in methods:
        rows = [r for r in records if r["method"] == m]
        table[m] = {k: _mean([r[k] for r in rows]) for k in METRICS}
        by_yaw[m] = {
            str(y): {k: _mean([r[k] for r in rows if r["yaw_deg"] == y]) for k in ("psnr", "psnr_face", "ssim", "depth_abs", "consistency")}
            for y in sorted({r["yaw_deg"] for r in rows})
        }
    return {"table": table, "by_yaw": by_yaw}
