"""`live3dpe eval --real`: the editor on a folder of real portraits, measured as a user sees it.

Each portrait goes through the product's own path (detection, EG3D alignment, edit, paste-back:
`PortraitService`), once without a prompt, once per text prompt and once with its reference
image. For the edit seen from the input camera and from yaw +-20 / +-30 degrees it records, on
the face region of the aligned crop (`facestats`): identity (dlib descriptor distance to the
input crop), colour shift (CIELAB; judged against the expected direction of known styles),
the reference-image direction, the sharpness ratio, plus the spread between prompts and the
time per edit. A ceiling row holds what the input itself scores after a round trip through the
output resolution, so the losses the model adds can be told from those resolution alone causes.

A file that cannot be read or has no face is reported and skipped; the run goes on.
"""
from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from live3dpe.evaluation.facestats import (
    DEFAULT_PROMPTS,
    FACE_SIZE,
    Expectation,
    at_face_size,
    expectation_for,
    lab_shift,
    lab_stats,
    reference_direction,
    sharpness,
    spread,
)
from live3dpe.evaluation.identity import DlibIdentity
from live3dpe.evaluation.learned import Unavailable
from live3dpe.evaluation.sheet import contact_sheet, write_image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
DEFAULT_YAWS = (-30.0, -20.0, 20.0, 30.0)
NO_PROMPT = "(no prompt)"
REFERENCE = "reference image"
REFERENCE_EDIT = "edit by reference"  # its contact-sheet column (next to the reference itself)
INPUT_VIEW = "input"


@dataclass(frozen=True)
class RealConfig:
    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    yaws_deg: tuple[float, ...] = DEFAULT_YAWS
    tile: int = 128  # contact-sheet tile side in px: 8 portraits with a reference stay under 2 MB


def view_name(yaw: float) -> str:
    return f"yaw{yaw:+g}"


def list_images(folder: Path) -> list[Path]:
    """The image files of a folder, sorted by name; a clear error when there are none."""
    if not folder.is_dir():
        raise FileNotFoundError(f"folder {folder} not found")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def find_reference(folder: Path | None, portrait: Path) -> Path | None:
    """The reference for `portrait`: same file name in `folder`, else same stem with any image suffix."""
    if folder is None:
        return None
    if (folder / portrait.name).is_file():
        return folder / portrait.name
    return next((folder / (portrait.stem + s) for s in IMAGE_SUFFIXES if (folder / (portrait.stem + s)).is_file()), None)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "edit"


@dataclass
class _Input:
    """The input crop's measures every output is compared with."""

    crop: np.ndarray  # FACE_SIZE
    descriptor: np.ndarray | None
    stats: dict[str, float]
    sharpness: float


class RealFaceEvaluator:
    """Edits and measures one portrait at a time with a `PortraitService`."""

    def __init__(self, service, identity: DlibIdentity | Unavailable, cfg: RealConfig = RealConfig()) -> None:
        self.service = service
        self.identity = identity
        self.cfg = cfg
        self.edit_labels = [NO_PROMPT, *cfg.prompts]

    # ------------------------------------------------------------------ measures
    def _descriptor(self, image: np.ndarray) -> np.ndarray | None:
        return None if isinstance(self.identity, Unavailable) else self.identity.descriptor(image)

    def _measure(self, output: np.ndarray, base: _Input, expected: Expectation | None, reference: dict | None) -> dict:
        out = at_face_size(output)
        stats = lab_stats(out)
        row: dict = {"id_distance": None, "same_person": None}
        if not isinstance(self.identity, Unavailable):
            d = self.identity.between(base.descriptor, self.identity.descriptor(out))
            row = {"id_distance": d, "same_person": d < self.identity.threshold}
        row["sharpness_ratio"] = sharpness(out) / max(base.sharpness, 1e-6)
        row["lab_shift"] = lab_shift(base.stats, stats)
        if expected is not None:
            shift = expected.shift(base.stats, stats)
            row.update(direction_shift=shift, direction_ok=expected.met(shift))
        if reference is not None:
            row["ref_cos"], row["ref_progress"] = reference_direction(base.stats, stats, reference)
        return row

    def _ceiling(self, base: _Input, size: int) -> dict:
        """The input crop through the output resolution and back: the best an output of that size can score."""
        small = cv2.resize(base.crop, (size, size), interpolation=cv2.INTER_AREA)
        return {k: v for k, v in self._measure(small, base, None, None).items() if k in ("id_distance", "same_person", "sharpness_ratio")}

    def _reference_face(self, image: np.ndarray) -> tuple[np.ndarray, bool]:
        """The reference's face aligned like the portraits (for its colour statistics), or the whole
        image when no face is found there (a texture or a painting can still be a prompt)."""
        from live3dpe.pipeline.portrait import NoFaceError

        try:
            return at_face_size(self.service.align(image)[0]), True
        except NoFaceError:
            side = min(image.shape[:2])
            y, x = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
            return at_face_size(image[y : y + side, x : x + side]), False

    # ------------------------------------------------------------------ one portrait
    def portrait(
        self, path: Path, reference_path: Path | None, photos: Path | None = None, progress: Callable[[], None] = lambda: None
    ) -> tuple[dict, dict[str, np.ndarray]]:
        """Edit and measure one portrait -> (JSON row, contact-sheet tiles). ValueError for bad input."""
        from live3dpe.pipeline.compose import paste
        from live3dpe.stream.sources import read_image

        image = read_image(path)
        row: dict = {"image": path.name, "reference": None, "reference_note": None, "edits": {}}
        reference = None
        if reference_path is not None:
            try:
                reference = read_image(reference_path)
                row["reference"] = reference_path.name
            except (ValueError, FileNotFoundError) as err:
                row["reference_note"] = f"reference skipped: {err}"
        jobs: list[tuple[str, str, str | None]] = [(NO_PROMPT, "reconstruction", None)]
        jobs += [(p, "text", p) for p in self.cfg.prompts]
        if reference is not None:
            jobs.append((REFERENCE, "reference", None))

        base: _Input | None = None
        ref_stats = None
        tiles: dict[str, np.ndarray] = {}
        outputs_for_spread: list[np.ndarray] = []
        for label, kind, text in jobs:
            t0 = time.perf_counter()
            result = self.service.edit(image, text=text, reference=reference if kind == "reference" else None)
            ms = (time.perf_counter() - t0) * 1e3
            if base is None:  # the aligned input is the same for every edit of this photo
                crop = at_face_size(result.crop)
                base = _Input(crop, self._descriptor(crop), lab_stats(crop), sharpness(crop))
                row["input_face_found"] = None if isinstance(self.identity, Unavailable) else base.descriptor is not None
                row["output_size"] = int(result.edited.shape[0])
                row["ceiling"] = self._ceiling(base, result.edited.shape[0])
                tiles["input"] = crop
            if kind == "reference" and ref_stats is None:
                ref_face, aligned = self._reference_face(reference)
                ref_stats = lab_stats(ref_face)
                row["reference_aligned"] = aligned
                tiles["reference"] = ref_face
            expected = expectation_for(text) if text else None
            ref = ref_stats if kind == "reference" else None
            views = {INPUT_VIEW: self._measure(result.edited, base, expected, ref)}
            view_ms = []
            for yaw in self.cfg.yaws_deg:
                t1 = time.perf_counter()
                img = self.service.view(result.planes, yaw, 0.0)
                view_ms.append((time.perf_counter() - t1) * 1e3)
                views[view_name(yaw)] = self._measure(img, base, expected, ref)
                if label == self.sheet_views_of:
                    tiles[self.view_column(yaw)] = img
            row["edits"][label] = {
                "kind": kind,
                "prompt": text,
                "expected": None if expected is None else str(expected),
                "ms": ms,
                "view_ms": float(np.median(view_ms)) if view_ms else None,
                "views": views,
            }
            tiles[REFERENCE_EDIT if kind == "reference" else label] = result.edited
            if kind != "reconstruction":
                outputs_for_spread.append(at_face_size(result.edited))
            if photos is not None:
                # as `live3dpe edit` and the live compositor paste it
                pasted = paste(image, result.edited, result.observation, match_colour=kind == "reconstruction",
                               reproduces_input=self.service.runner.reproduces_input)  # fmt: skip
                write_image(photos / path.stem / f"{slug(label)}.png", pasted)
            progress()
        row["spread"] = spread(outputs_for_spread)
        return row, tiles

    # ------------------------------------------------------------------ contact sheet layout
    @property
    def sheet_views_of(self) -> str:
        """Whose novel views the sheet shows: the first text prompt's (the reconstruction's without one)."""
        return self.cfg.prompts[0] if self.cfg.prompts else NO_PROMPT

    def view_column(self, yaw: float) -> str:
        return f"{self.sheet_views_of} {yaw:+g}"

    def sheet_columns(self, with_reference: bool) -> list[str]:
        cols = ["input", *self.edit_labels]
        if with_reference:
            cols += ["reference", REFERENCE_EDIT]
        return cols + [self.view_column(y) for y in self.cfg.yaws_deg]


# ---------------------------------------------------------------------- the whole folder
def run_real(
    service,
    portraits: Path,
    references: Path | None,
    identity: DlibIdentity | Unavailable,
    cfg: RealConfig = RealConfig(),
    photos: Path | None = None,
) -> tuple[dict, np.ndarray | None]:
    """Every portrait of a folder -> (JSON payload, contact sheet or None when nothing could be edited)."""
    from tqdm import tqdm

    from live3dpe.evaluation import suite
    from live3dpe.pipeline.portrait import NoFaceError

    if references is not None and not references.is_dir():
        raise FileNotFoundError(f"reference folder {references} not found")
    files = list_images(portraits)
    ev = RealFaceEvaluator(service, identity, cfg)
    if cfg.prompts:
        service.prompt(text=cfg.prompts[0])  # load the text model now, not inside the first timed edit
    t0 = time.perf_counter()
    rows, errors, sheet_rows = [], [], []
    per_file = len(ev.edit_labels) + (references is not None)
    with tqdm(total=len(files) * per_file, desc="real-face edits", unit="edit", disable=None) as bar:
        for i, path in enumerate(files):
            ref_path = find_reference(references, path)
            try:
                row, tiles = ev.portrait(path, ref_path, photos, progress=lambda: bar.update(1))
            except (ValueError, FileNotFoundError) as err:  # NoFaceError is a ValueError
                message = "no face found" if isinstance(err, NoFaceError) else str(err)
                errors.append({"image": path.name, "error": message})
                log.warning("%s: %s; skipped", path.name, message)
            else:
                if references is not None and ref_path is None:
                    row["reference_note"] = "no reference with this name"
                rows.append(row)
                sheet_rows.append((path.stem, tiles))
            bar.update((i + 1) * per_file - bar.n)  # a skipped file or one without a reference counts as done
    columns = ev.sheet_columns(any(r["reference"] for r in rows))
    sheet = contact_sheet(sheet_rows, columns, cfg.tile) if sheet_rows else None
    payload = {
        "benchmark": "real_faces",
        "environment": suite.environment(service.editor),
        "model": model_description(service.editor),
        "config": {
            "portraits": str(portraits),
            "references": None if references is None else str(references),
            "prompts": list(cfg.prompts),
            "yaws_deg": list(cfg.yaws_deg),
            "measure_size": FACE_SIZE,
            "expected": {p: (str(e) if (e := expectation_for(p)) else None) for p in cfg.prompts},
        },
        "identity": _identity_note(identity),
        "sheet": {"views_of": ev.sheet_views_of, "columns": columns},
        "errors": errors,
        "rows": rows,
        "summary": summarize(rows, [view_name(y) for y in cfg.yaws_deg]),
        "by_edit": by_edit(rows, [INPUT_VIEW, *(view_name(y) for y in cfg.yaws_deg)]),
        "seconds": time.perf_counter() - t0,
    }
    return payload, sheet


def model_description(editor) -> dict:
    return {"preset": editor.config.name, "weights": editor.weights_version, "trained": editor.meta is not None}


def _identity_note(identity: DlibIdentity | Unavailable) -> dict:
    if isinstance(identity, Unavailable):
        return {"metric": identity.name, "available": False, "reason": identity.reason}
    return {"metric": identity.name, "available": True, "same_person_below": identity.threshold, "no_face_distance": 1.0}


# ---------------------------------------------------------------------- aggregation
def _mean(values: list) -> float | None:
    v = [float(x) for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return float(np.mean(v)) if v else None


def _collect(rows: list[dict], kinds: tuple[str, ...], views: list[str], key: str) -> list:
    return [e["views"][v].get(key) for r in rows for e in r["edits"].values() if e["kind"] in kinds for v in views]


def summarize(rows: list[dict], novel_views: list[str]) -> dict:
    """Headline figures; the keys shared with `realface_check.py` mean the same (text prompts at the
    input view; its novel views are yaw +-20)."""
    text, ref = ("text",), ("reference",)
    near = [v for v in novel_views if v in (view_name(-20), view_name(20))]
    far = [v for v in novel_views if v not in near]
    return {
        "portraits": len(rows),
        "id_kept_input_view": _mean(_collect(rows, text, [INPUT_VIEW], "same_person")),
        "id_kept_novel_views": _mean(_collect(rows, text, near, "same_person")),
        "id_kept_far_views": _mean(_collect(rows, text, far, "same_person")),
        "id_mean_distance": _mean(_collect(rows, text, [INPUT_VIEW], "id_distance")),
        "text_direction_ok": _mean(_collect(rows, text, [INPUT_VIEW], "direction_ok")),
        "ref_cos_mean": _mean(_collect(rows, ref, [INPUT_VIEW], "ref_cos")),
        "ref_progress_mean": _mean(_collect(rows, ref, [INPUT_VIEW], "ref_progress")),
        "prompt_spread_mean": _mean([r["spread"] for r in rows]),
        "sharpness_ratio_mean": _mean(_collect(rows, text, [INPUT_VIEW], "sharpness_ratio")),
        "reconstruction_id_mean_distance": _mean(_collect(rows, ("reconstruction",), [INPUT_VIEW], "id_distance")),
        "ceiling_id_mean_distance": _mean([r["ceiling"]["id_distance"] for r in rows]),
        "ceiling_sharpness_ratio_mean": _mean([r["ceiling"]["sharpness_ratio"] for r in rows]),
        "ms_per_edit_median": float(np.median([e["ms"] for r in rows for e in r["edits"].values()])) if rows else None,
    }


def by_edit(rows: list[dict], views: list[str]) -> dict:
    """{edit label: {"ms": median, view: {metric: mean over portraits}}}, in first-seen order."""
    labels = list(dict.fromkeys(label for r in rows for label in r["edits"]))
    keys = ("id_distance", "same_person", "direction_ok", "ref_cos", "sharpness_ratio")
    out = {}
    for label in labels:
        edits = [r["edits"][label] for r in rows if label in r["edits"]]
        out[label] = {"ms": float(np.median([e["ms"] for e in edits])), "expected": edits[0]["expected"]}
        out[label].update({v: {k: _mean([e["views"][v].get(k) for e in edits]) for k in keys} for v in views})
    return out


# ---------------------------------------------------------------------- markdown
def _f(v: float | None, fmt: str) -> str:
    return "n/a" if v is None else fmt.format(v)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0%}"


def markdown(payload: dict, sheet_name: str | None = None) -> str:
    """The real-face tables (also embedded in RESULTS.md)."""
    env, model, cfg, ident = payload["environment"], payload["model"], payload["config"], payload["identity"]
    s, table = payload["summary"], payload["by_edit"]
    id_ok = ident["available"]
    near = [view_name(y) for y in cfg["yaws_deg"] if abs(y) == 20]
    far = [view_name(y) for y in cfg["yaws_deg"] if abs(y) != 20]
    lines = [
        f"Device: {env['device']} · precision {env['precision']} · commit {env['commit']} · {env['date']}",
        "",
        f"Model: preset `{model['preset']}`, weights `{model['weights'][:16]}`"
        + ("" if model["trained"] else " — **random weights**"),
        "",
        f"{s['portraits']} portraits evaluated ({len(payload['errors'])} skipped), each without a prompt, with "
        + (", ".join(f"`{p}`" for p in cfg["prompts"]) or "no text prompt")
        + (" and its reference image" if cfg["references"] else "")
        + f"; views: the input camera and yaw {', '.join(f'{y:+g}' for y in cfg['yaws_deg'])}°. "
        f"Measured on the face region (central ellipse) of the aligned crop, every image at {cfg['measure_size']} px.",
        "",
    ]
    if not id_ok:
        lines += [f"Identity: {ident['reason']}.", ""]

    def id_cells(entry: dict, views: list[str]) -> str:
        if not id_ok:
            return "unavailable"
        return _pct(_mean([entry[v]["same_person"] for v in views]))

    lines += [
        "| edit | expected | ID distance ↓ | same person ↑ | same person ±20° ↑ | same person ±30° ↑ | colour direction ↑ | sharpness ratio ↑ | ms / edit |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    if s["portraits"]:
        lines.append(
            f"| input at output resolution (ceiling) | | {_f(s['ceiling_id_mean_distance'], '{:.3f}')} | "
            f"{_pct(_mean([r['ceiling']['same_person'] for r in payload['rows']]))} | | | | {_f(s['ceiling_sharpness_ratio_mean'], '{:.3f}')} | |"
        )
    for label, e in table.items():
        inp = e[INPUT_VIEW]
        if e["expected"]:
            direction = f"{_pct(inp['direction_ok'])} moved"
        elif inp["ref_cos"] is not None:
            direction = f"cos {inp['ref_cos']:.2f}"
        else:
            direction = ""
        lines.append(
            f"| {label} | {e['expected'] or ''} | {_f(inp['id_distance'], '{:.3f}') if id_ok else 'unavailable'} | "
            f"{id_cells(e, [INPUT_VIEW])} | {id_cells(e, near)} | {id_cells(e, far)} | {direction} | "
            f"{_f(inp['sharpness_ratio'], '{:.3f}')} | {e['ms']:.0f} |"
        )
    lines += [
        "",
        "Summary (text prompts at the input view unless said; the same definitions as `shared/tools/realface_check.py`): "
        f"identity kept {_pct(s['id_kept_input_view'])} at the input view, {_pct(s['id_kept_novel_views'])} at yaw ±20°, "
        f"{_pct(s['id_kept_far_views'])} at ±30° (mean distance {_f(s['id_mean_distance'], '{:.3f}')}; without a prompt "
        f"{_f(s['reconstruction_id_mean_distance'], '{:.3f}')}; the input through the output resolution alone "
        f"{_f(s['ceiling_id_mean_distance'], '{:.3f}')}); colour moved the expected way in {_pct(s['text_direction_ok'])} of "
        f"text edits; reference direction cosine {_f(s['ref_cos_mean'], '{:.2f}')} (progress {_f(s['ref_progress_mean'], '{:.2f}')}); "
        f"spread between prompts {_f(s['prompt_spread_mean'], '{:.1f}')} / 255; sharpness ratio {_f(s['sharpness_ratio_mean'], '{:.3f}')} "
        f"(ceiling {_f(s['ceiling_sharpness_ratio_mean'], '{:.3f}')}); median {_f(s['ms_per_edit_median'], '{:.0f}')} ms per edit "
        "(detection, alignment, prompt, encoding and one render).",
        "",
        "ID distance: dlib face descriptor distance between the output and the aligned input; the same person is below 0.6, "
        "and a face dlib cannot find counts as 1.0. Colour direction: share of edits whose face region moved at least the "
        "expected CIELAB amount (`b +8` = 8 units yellower); for the reference image, the cosine between the output's and the "
        "reference's shift of [L, a, b, L spread] from the input. Sharpness ratio: Laplacian variance of the output's face "
        "over the input's.",
    ]
    if payload["errors"]:
        lines += ["", "Skipped: " + "; ".join(f"`{e['image']}`: {e['error']}" for e in payload["errors"]) + "."]
    if sheet_name:
        lines += ["", f"Contact sheet (`{sheet_name}`): rows are portraits; columns the aligned input, the edits, the "
                  f"reference (its face aligned like the portraits) and its edit, and `{payload['sheet']['views_of']}` from the "
                  "novel views (yaw in degrees)."]
    return "\n".join(lines) + "\n"
