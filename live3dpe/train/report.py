"""Markdown tables of the training benchmarks (the JSON files hold every number)."""
from __future__ import annotations

from pathlib import Path

ROWS = (
    ("text_train_phrase", "text prompt, training phrasing"),
    ("text_heldout_phrase", "text prompt, held-out phrasing"),
    ("image_prompt", "image prompt"),
    ("no_edit", "baseline: no edit (reconstruction)"),
    ("lift_true_2d_edit", "baseline: prior on the true 2D edit"),
)


def _training_lines(t: dict | None) -> list[str]:
    if not t:
        return []
    return [
        f"Training (reproduce: `{t.get('reproduce')}`): stage 1 {t.get('prior_steps')} steps in {t.get('prior_minutes')} min, "
        f"stage 2 {t.get('edit_steps')} steps in {t.get('edit_minutes')} min"
        + (f" + a warm restart of {t['restart_steps']} steps in {t.get('restart_minutes')} min" if t.get("restart_steps") else "")
        + ", on a 2-core CPU shared with other jobs.",
        "",
    ]


def quality_markdown(q: dict) -> str:
    r = q["reconstruction_psnr"]
    lines = [
        f"# Bundled model ({Path(q.get('checkpoint', '?')).stem}): quality on held-out synthetic people",
        "",
        f"Checkpoint `{q.get('checkpoint', '?')}`, {q.get('eval_people', '?')} people, PSNR in dB against ground-truth renders.",
        "",
        *_training_lines(q.get("training")),
        "## Reconstruction (no prompt)",
        "",
        "| input view | yaw -30° | yaw +30° |",
        "|---|---|---|",
        f"| {r['input']:.2f} | {r['yaw-30']:.2f} | {r['yaw+30']:.2f} |",
        "",
        "## Editing (mean over styles; novel = mean of yaw ±30°)",
        "",
        "| prompt | input view | novel views |",
        "|---|---|---|",
    ]
    mean = q["mean_over_styles"]
    for key, name in ROWS:
        if key in mean:
            lines.append(f"| {name} | {mean[key]['input']:.2f} | {mean[key]['novel']:.2f} |")
    lines += ["", f"Style `{q.get('custom_style_not_trained')}` was not in stage 2 (it is the customization target).", ""]
    lines += ["## Per style (text, training phrasing / image prompt / no edit; novel views)", "", "| style | text | image | no edit |", "|---|---|---|---|"]
    for style, row in q["styles"].items():
        text = row.get("text_train_phrase", {}).get("novel", float("nan"))
        lines.append(f"| {style} | {text:.2f} | {row['image_prompt']['novel']:.2f} | {row['no_edit']['novel']:.2f} |")
    return "\n".join(lines) + "\n"


def customization_markdown(c: dict) -> str:
    lines = [
        f"# Customization: learning `{c['style']}` from n pairs (prompt: \"{c['phrase']}\")",
        "",
        "Tuned: what `live3dpe adapt` tunes (the prompt encoder, with E_t's norm layers or, on the appearance route, the",
        "appearance editor). PSNR (dB) on held-out people against optimisation time (evaluation time excluded). Step 0 = before tuning.",
        "",
        "| pairs | time (s) | steps | PSNR input | PSNR novel | PSNR novel, held-out phrasing |",
        "|---|---|---|---|---|---|",
    ]
    for n, rows in c["runs"].items():
        for r in rows:
            lines.append(f"| {n} | {r['time_s']:.0f} | {r['step']} | {r['psnr_input']:.2f} | {r['psnr_novel']:.2f} | {r['psnr_heldout_phrase_novel']:.2f} |")
    return "\n".join(lines) + "\n"
