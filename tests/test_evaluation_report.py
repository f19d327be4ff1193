"""benchmarks/report.py: reads whatever results exist, plots them, says what is missing."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPORT_PY = Path(__file__).resolve().parents[1] / "benchmarks" / "report.py"


@pytest.fixture()
def report(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_report", REPORT_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", tmp_path)
    monkeypatch.setattr(module, "REPORT", tmp_path / "RESULTS.md")
    return module


def _quality() -> dict:
    env = {"device": "CPU test", "precision": "float32", "commit": "abc1234", "date": "now"}
    per_yaw = {"0.0": {"psnr_face": 20.0, "ssim": 0.8, "consistency": None}, "25.0": {"psnr_face": 18.0, "ssim": 0.7, "consistency": 25.0}}
    return {
        "environment": env,
        "comparison": {"by_yaw": {"3dpe_image": per_yaw, "ground_truth": {"0.0": {"psnr_face": float("inf"), "ssim": 1.0, "consistency": None}}}},
        "sequence": {"frames": 8, "style": "bronze", "flicker": {"raw": 0.02, "smoothed": 0.01, "ground_truth": 0.005}},
    }


def test_find_curves_locates_records_with_a_step_key(report):
    data = {"environment": {}, "stage1": {"curve": [{"step": 0, "loss": 1.0}, {"step": 10, "loss": 0.5}]}, "note": [1, 2]}
    found = report.find_curves(data)
    assert [(name, x) for name, x, _ in found] == [("stage1/curve", "step")]
    assert report.find_curves({"rows": [{"a": 1}, {"a": 2}]}) == []  # no step/time key: not a curve
    # customization results: one curve per number of pairs, against time rather than steps
    runs = {"runs": {n: [{"step": 0, "time_s": 0.0, "psnr_novel": 9.0}, {"step": 4, "time_s": 10.0, "psnr_novel": 12.0}] for n in ("2", "5")}}
    assert [(name, x) for name, x, _ in report.find_curves(runs)] == [("runs/2", "time_s"), ("runs/5", "time_s")]


def test_report_without_results_says_not_yet_measured(report, tmp_path):
    text = report.build_report()
    # quality, worse photos, A/B, novel-view ceiling, model, pipeline, refactor A/B, pose, serve scale, batching, Ray, soak, adaptation
    assert text.count(report.NOT_MEASURED) == 13
    assert not list(tmp_path.glob("*.png"))


def test_report_plots_what_exists_and_stamps_it(report, tmp_path):
    (tmp_path / "quality.json").write_text(json.dumps(_quality()))
    (tmp_path / "quality.md").write_text("# Quality\n\n| method | PSNR |\n|---|---|\n| x | 1 |\n")
    (tmp_path / "training_stage1.json").write_text(json.dumps({"device": "CPU", "curve": [{"step": 0, "psnr": 10.0}, {"step": 5, "psnr": 14.0}]}))
    text = report.build_report()
    for png in ("quality_vs_view.png", "flicker.png", "adaptation.png"):
        assert (tmp_path / png).stat().st_size > 1000
        assert f"results/{png}" in text
    assert "| x | 1 |" in text and "# Quality" not in text
    assert "`training_stage1.json`: 1 curve(s)" in text
    assert text.count(report.NOT_MEASURED) == 11  # worse photos, A/B, ceiling, model, pipeline, refactor A/B, pose, serve scale, batching, Ray, soak
