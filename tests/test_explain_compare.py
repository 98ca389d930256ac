"""`pvision explain ROOT`: the similarity metrics on hand-made maps, the verdict against the seed band, and one real
ROOT (TORCH_DIGITS at seeds 0 and 1, and DDP ×2 at seed 0) explained, compared, and shown in the report
(docs/explain.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from parallel_vision.explain import compare, similarity
from shared_runs import TORCH_DIGITS  # tests/ on sys.path
from test_explain import copy_run

IMAGES = 40


# --- the metrics ------------------------------------------------------------------------------------------------

def _blob(cx: float, cy: float, size: int = 28) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    return np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 18.0)


def test_a_map_against_itself_and_against_its_negative() -> None:
    m = _blob(10, 12) + 0.3 * _blob(20, 18)
    same = similarity.pair(m, m.copy())
    assert same == pytest.approx({"spearman": 1.0, "spearman_abs": 1.0, "ssim": 1.0, "hog": 1.0, "topk": 1.0})
    flipped = similarity.pair(m, -m)  # the same pixels, the opposite sign: salient alike, ranked opposite
    assert flipped["spearman"] == pytest.approx(-1.0) and flipped["spearman_abs"] == pytest.approx(1.0)
    assert flipped["ssim"] == pytest.approx(1.0) and flipped["topk"] == 1.0


def test_maps_of_different_places_score_low_and_a_constant_map_has_no_rank_correlation() -> None:
    apart = similarity.pair(_blob(6, 6), _blob(22, 22))
    assert apart["topk"] == 0.0 and apart["spearman_abs"] < 0.1 and apart["ssim"] < 0.5
    rng = np.random.default_rng(0)
    noise = similarity.per_image(rng.random((30, 28, 28)), rng.random((30, 28, 28)))
    assert abs(float(np.median(noise["spearman"]))) < 0.05
    assert float(np.median(noise["topk"])) == pytest.approx(similarity.TOPK_SHARE, abs=0.05)  # chance agreement
    flat = similarity.pair(np.zeros((28, 28)), _blob(14, 14))
    assert np.isnan(flat["spearman"]) and np.isnan(flat["spearman_abs"])
    summary = similarity.median_ci(np.array([0.5, np.nan, 0.7, 0.6, 0.9]))
    assert summary["n"] == 4 and summary["left_out"] == 1 and summary["median"] == pytest.approx(0.65)
    assert summary["lo"] <= summary["median"] <= summary["hi"]


def test_the_verdict_reads_the_group_interval_against_the_seed_band() -> None:
    band = {"median": 0.6, "lo": 0.55, "hi": 0.65}
    assert compare.verdict({"median": 0.4, "lo": 0.35, "hi": 0.5}, band).startswith("below the seed band")
    assert compare.verdict({"median": 0.62, "lo": 0.5, "hi": 0.7}, band).startswith("inside the seed band")
    assert compare.verdict({"median": 0.9, "lo": 0.85, "hi": 0.95}, band).startswith("above the seed band")
    assert "--seeds 0,1" in compare.verdict({"median": 0.9, "lo": 0.85, "hi": 0.95}, None)
    assert compare.answer([], {}, {}, ("saliency",)).startswith("No answer yet")


# --- a real ROOT ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def root(trained: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three torch runs in one ROOT: single at seeds 0 and 1, DDP ×2 at seed 0 (the run files, copied)."""
    single0, single1, ddp0 = trained.together(TORCH_DIGITS, dict(TORCH_DIGITS, seed=1),
                                              dict(TORCH_DIGITS, strategy="ddp", workers=2))
    folder = tmp_path_factory.mktemp("explain-root")
    for name, result in (("single-seed0", single0), ("single-seed1", single1), ("ddp-seed0", ddp0)):
        copy_run(result.out_dir, folder / "runs" / name)
    return folder


def cli(*args: object) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-m", "parallel_vision", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env)


@pytest.fixture(scope="module")
def compared(root: Path) -> dict[str, Any]:
    out = cli("explain", root, "--images", IMAGES, "--method", "saliency,gradcam")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("explaining runs/") == 3
    return {"doc": json.loads((root / "explain" / "compare.json").read_text()), "stdout": out.stdout}


def test_the_root_is_explained_and_compared_in_groups_against_the_seed_band(root: Path,
                                                                            compared: dict[str, Any]) -> None:
    doc = compared["doc"]
    assert doc["kind"] == "explain-compare" and doc["images"] == IMAGES and doc["methods"] == ["saliency", "gradcam"]
    assert all(r["explained"] for r in doc["runs"]) and len(doc["runs"]) == 3
    # seed 0 vs 1 of single is the seed band; single vs DDP at seed 0 the strategy group; seed 1 vs DDP seed 0
    # differs in two respects and is no pair
    groups = {(p["group"], p["a"], p["b"]) for p in doc["pairs"] if p["method"] == "saliency"}
    assert {(g, frozenset((a, b))) for g, a, b in groups} == {
        ("seed band", frozenset(("runs/single-seed0", "runs/single-seed1"))),
        ("strategy", frozenset(("runs/single-seed0", "runs/ddp-seed0")))}
    for method in ("saliency", "gradcam"):
        band = doc["groups"][f"seed band|{method}"]
        assert band["pairs"] == 1 and band["spearman_abs"]["n"] + band["spearman_abs"]["left_out"] == IMAGES
        lo, mid, hi = (band["spearman_abs"][k] for k in ("lo", "median", "hi"))
        assert lo <= mid <= hi
        # two trained models look at more of the same pixels than a trained and a re-initialised one do
        assert mid > doc["randomised_floor"][method]["spearman_median"]
    verdicts = {(v["group"], v["method"]): v["verdict"] for v in doc["verdicts"]}
    assert set(verdicts) == {("strategy", "saliency"), ("strategy", "gradcam")}
    assert all(v.split(":")[0] in ("below the seed band", "inside the seed band", "above the seed band")
               for v in verdicts.values())
    assert doc["answer"].startswith("saliency: two seeds of one configuration give maps with median Spearman |·|")
    assert doc["answer"] in compared["stdout"]


def test_a_second_compare_reuses_the_explanations_and_the_report_shows_the_section(
        root: Path, compared: dict[str, Any]) -> None:
    again = cli("explain", root, "--images", IMAGES, "--method", "saliency")
    assert again.returncode == 0, again.stderr
    assert "explaining" not in again.stdout  # every run was already explained on these images with saliency
    doc = json.loads((root / "explain" / "compare.json").read_text())
    assert doc["groups"]["seed band|saliency"] == compared["doc"]["groups"]["seed band|saliency"]
    report = cli("report", root)
    assert report.returncode == 0, report.stderr
    text = (root / "report.md").read_text()
    assert "Do parallel-trained models look at the same pixels?" in text and doc["answer"] in text
