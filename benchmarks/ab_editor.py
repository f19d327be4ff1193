"""A/B of editor designs on the synthetic suite and on real portraits (issue 14's table).

    python benchmarks/ab_editor.py --run "tiny (old default)=live3dpe/model/weights/default_tiny.safetensors" \\
        --run "small=live3dpe/model/weights/default_small.safetensors" \\
        --real ../shared/reference/real_faces/portraits --references ../shared/reference/real_faces/references

Each run: the held-out synthetic people of `live3dpe.train.evaluate` (reconstruction and every
style's edit vs "no edit" and vs "2D edit -> 3D prior") and `live3dpe eval --real` (identity,
colour direction, sharpness, contact sheet) into `benchmarks/results/ab_editor/<slug>/`; a run
whose results exist is not measured again; a "note" added to a run folder's `run.json` is printed
under the table (what the row's figures do not say). The table (`ab_editor.json` / `.md`) covers every
run folder present: rows already in it first, new ones in the order of `--run`, then by name.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import torch
from common import RESULTS, environment

from live3dpe.model.checkpoint import load_checkpoint
from live3dpe.synth.styles import STYLES
from live3dpe.train.data import TextFeatureCache
from live3dpe.train.evaluate import evaluate, make_eval_set

OUT = RESULTS / "ab_editor"


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def measure(name: str, checkpoint: str, real: Path, references: Path, people: int) -> Path:
    folder = OUT / slug(name)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(json.dumps({"name": name, "checkpoint": checkpoint}))
    synthetic = folder / "synthetic.json"
    if not synthetic.exists():
        net, meta = load_checkpoint(checkpoint)
        result = evaluate(net, make_eval_set(people, list(STYLES), 128), TextFeatureCache(meta.text_backend), list(STYLES))
        result.update(environment=environment(torch.device("cpu")), preset=meta.config.name, people=people)
        synthetic.write_text(json.dumps(result, indent=1))
    if not (folder / "real_faces.json").exists():
        cmd = ["live3dpe", "eval", "--real", str(real), "--references", str(references), "--weights", checkpoint, "--out", str(folder)]
        subprocess.run(cmd, check=True)
    return folder


def row(folder: Path) -> dict:
    run = json.loads((folder / "run.json").read_text())
    syn = json.loads((folder / "synthetic.json").read_text())
    real = json.loads((folder / "real_faces.json").read_text())["summary"]
    styles = syn["styles"]
    margin = {s: r["text_train_phrase"]["novel"] - r["no_edit"]["novel"] for s, r in styles.items() if "text_train_phrase" in r}
    m = syn["mean_over_styles"]
    recon = syn["reconstruction_psnr"]
    return {
        "name": run["name"], "checkpoint": run["checkpoint"], "preset": syn.get("preset"), "folder": folder.name,
        "recon_input_db": recon["input"], "recon_30_db": (recon["yaw-30"] + recon["yaw+30"]) / 2,
        "text_db": m["text_train_phrase"]["novel"], "heldout_db": m["text_heldout_phrase"]["novel"],
        "image_db": m["image_prompt"]["novel"], "no_edit_db": m["no_edit"]["novel"], "lift_2d_db": m["lift_true_2d_edit"]["novel"],
        "min_style_margin_db": min(margin.values()), "styles_beating_no_edit_by_3db": sum(v >= 3 for v in margin.values()), "styles": len(margin),
        "id_input": real["id_kept_input_view"], "id_20": real["id_kept_novel_views"], "id_distance": real["id_mean_distance"],
        "direction": real["text_direction_ok"], "ref_cos": real["ref_cos_mean"], "sharpness": real["sharpness_ratio_mean"],
        "spread": real["prompt_spread_mean"], "ms_per_edit": real["ms_per_edit_median"], "note": run.get("note"),
    }  # fmt: skip


def markdown(rows: list[dict]) -> str:
    lines = [
        "# Editor A/B: old design vs each change (issue 14)",
        "",
        "Synthetic: 6 held-out people, every style, PSNR (dB) at yaw ±30° unless said (`live3dpe.train.evaluate`). "
        "Real: the 8 shared portraits through `live3dpe eval --real` (dlib identity; same definitions as `realface_check.py`). "
        "Goals: recon ≥ 26 / 22 dB, every style ≥ 3 dB over no edit, id ≥ 90 % / 75 %, direction ≥ 80 %, ref cos ≥ 0.6, sharpness ≥ 0.25.",
        "",
        "| design | recon input / ±30° | text (held-out) | image | no edit | 2D edit → prior | styles ≥ 3 dB over no edit (worst margin) | id input / ±20° | direction | ref cos | sharpness | spread | ms / edit |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['recon_input_db']:.1f} / {r['recon_30_db']:.1f} | {r['text_db']:.1f} ({r['heldout_db']:.1f}) | {r['image_db']:.1f} "
            f"| {r['no_edit_db']:.1f} | {r['lift_2d_db']:.1f} | {r['styles_beating_no_edit_by_3db']}/{r['styles']} ({r['min_style_margin_db']:+.1f}) "
            f"| {r['id_input']:.0%} / {r['id_20']:.0%} | {r['direction']:.0%} | {r['ref_cos']:.2f} | {r['sharpness']:.2f} | {r['spread']:.1f} | {r['ms_per_edit']:.0f} |"
        )
    lines += ["", "Style `neon` is never trained (the customization benchmark learns it), so it counts in the styles column but no design can be expected to edit it. "
              "ms / edit is `eval --real`'s median on the machine as it was: the two \"continued 14 min\" rows ran beside a training run, "
              "the \"retrained 60 min\" row beside `realface_check.py` (the same model alone: see real_faces.md).",
              "", *(f"- {r['name']}: {r['note']}" for r in rows if r.get("note")),
              "", "Contact sheets: " + ", ".join(f"[{r['name']}](results/ab_editor/{r['folder']}/contact_sheet.jpg)" for r in rows), ""]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", action="append", default=[], metavar="NAME=CHECKPOINT", help="a design to measure (repeatable)")
    p.add_argument("--real", type=Path, required=True, help="folder of real portraits (evaluation only, never training)")
    p.add_argument("--references", type=Path, required=True)
    p.add_argument("--people", type=int, default=6)
    args = p.parse_args()
    table = OUT / "ab_editor.json"
    order = [r["folder"] for r in json.loads(table.read_text())] if table.is_file() else []  # the table keeps its rows' order
    for spec in args.run:
        name, sep, ckpt = spec.partition("=")
        if not sep or not Path(ckpt).is_file():
            p.error(f"--run {spec!r}: expected NAME=CHECKPOINT with an existing checkpoint")
        folder = measure(name, ckpt, args.real, args.references, args.people).name
        order += [folder] if folder not in order else []
    folders = sorted((f for f in OUT.iterdir() if (f / "real_faces.json").exists()), key=lambda f: (f.name not in order, order.index(f.name) if f.name in order else 0, f.name))
    rows = [row(f) for f in folders]
    table.write_text(json.dumps(rows, indent=1))
    (OUT / "ab_editor.md").write_text(markdown(rows))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
