"""`pvision explain` on torch runs: the stratified sample, the faithfulness arithmetic on hand-made cases, and one
real run (TORCH_DIGITS, ~95 % on its 500 test images) explained twice — 20 images through the Python API, 50
through the CLI, the 20 among the 50 — whose maps must agree bit for bit, beat a random pixel order on deletion,
and differ from a re-initialised model's (docs/explain.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from parallel_vision.errors import ConfigError
from parallel_vision.explain import child, faithfulness, run
from parallel_vision.explain.sample import stratified_sample
from shared_runs import TORCH_DIGITS  # tests/ on sys.path

IMAGES = 50  # the CLI's run (issue 30's check)
FEW = 20  # the Python API's run, whose figures the faithfulness and sanity tests assert


def cli(*args: object, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-m", "parallel_vision", "explain", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)


def copy_run(source: Path, target: Path) -> Path:
    """The files explain reads, copied: the shared run's folder is only ever read."""
    target.mkdir(parents=True)
    for name in ("config.json", "result.json", "model.pt"):
        shutil.copy(source / name, target / name)
    return target


def fake_run(folder: Path, **config: Any) -> Path:
    """A run folder whose model file is a placeholder: enough for the checks made before any model is loaded."""
    from parallel_vision.config import RunConfig

    folder.mkdir(parents=True)
    cfg = RunConfig(**config)
    (folder / "config.json").write_text(cfg.to_json())
    (folder / ("model.pt" if cfg.framework == "torch" else "model.keras")).write_bytes(b"not a model")
    return folder


# --- the sample -------------------------------------------------------------------------------------------------

def test_the_sample_is_the_same_for_the_same_seed_and_balanced_over_classes() -> None:
    labels = np.random.default_rng(7).integers(0, 10, 1000)
    a, b, c = stratified_sample(labels, 50, 0), stratified_sample(labels, 50, 0), stratified_sample(labels, 50, 1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert len(np.unique(a)) == 50
    assert np.bincount(labels[a], minlength=10).tolist() == [5] * 10


def test_a_larger_sample_of_the_same_seed_extends_a_smaller_one() -> None:
    labels = np.random.default_rng(1).integers(0, 10, 1000)
    assert set(stratified_sample(labels, 20, 4)) < set(stratified_sample(labels, 50, 4))


def test_a_sample_that_does_not_divide_evenly_differs_by_at_most_one_per_class() -> None:
    labels = np.repeat(np.arange(10), 30)
    counts = np.bincount(labels[stratified_sample(labels, 23, 3)], minlength=10)
    assert counts.sum() == 23 and counts.max() - counts.min() == 1


def test_a_class_with_too_few_images_gives_its_share_to_the_others() -> None:
    labels = np.array([0] * 2 + [1] * 50 + [2] * 50)
    assert np.bincount(labels[stratified_sample(labels, 30, 0)]).tolist() == [2, 14, 14]


def test_more_images_than_the_test_set_is_one_line() -> None:
    with pytest.raises(ConfigError, match="--images must be between 1 and 100"):
        stratified_sample(np.zeros(100, np.int64), 101, 0)


# --- faithfulness on hand-made cases ----------------------------------------------------------------------------

def test_deletion_moves_the_most_attributed_pixels_first_in_equal_steps() -> None:
    image = np.arange(1, 5, dtype=np.float32).reshape(2, 2, 1)
    attribution = np.array([[0.1, 0.9], [0.5, 0.0]])
    pixel_order = faithfulness.order(attribution)
    assert pixel_order.tolist() == [1, 2, 0, 3]
    frames = faithfulness.deletion_frames(image, np.float32(0), pixel_order, steps=4)
    assert frames[..., 0].reshape(5, 4).tolist() == [[1, 2, 3, 4], [1, 0, 3, 4], [1, 0, 0, 4], [0, 0, 0, 4],
                                                     [0, 0, 0, 0]]


def test_insertion_starts_from_the_blurred_image_and_ends_at_the_image() -> None:
    image = np.zeros((9, 9, 1), np.float32)
    image[4, 4] = 1
    frames = faithfulness.insertion_frames(image, faithfulness.order(image[..., 0]), steps=3)
    assert np.allclose(frames[0], faithfulness.blurred(image)) and frames[0].max() < 0.2
    assert frames[1][4, 4, 0] == 1 and np.array_equal(frames[-1], image)


def test_ties_in_a_map_are_ordered_by_pixel_index() -> None:
    assert faithfulness.order(np.zeros((2, 3))).tolist() == [0, 1, 2, 3, 4, 5]


def test_the_area_under_a_curve_is_the_trapezoid_sum_over_0_to_1() -> None:
    areas = faithfulness.auc(np.array([[1, 1, 1, 1, 1], [1, 0.75, 0.5, 0.25, 0], [1, 0, 0, 0, 0]]))
    assert np.allclose(areas, [1, 0.5, 0.125])


def test_rank_correlation_is_one_for_a_monotone_map_minus_one_reversed_and_zero_for_a_constant() -> None:
    a = np.random.default_rng(0).random((1, 5, 5))
    rho = faithfulness.rank_correlations(np.concatenate([a, a, a]), np.concatenate([a ** 3, -a, np.zeros_like(a)]))
    assert np.allclose(rho, [1, -1, 0])


# --- refusals ---------------------------------------------------------------------------------------------------

def test_an_unknown_method_is_one_line() -> None:
    with pytest.raises(ConfigError, match="unknown method lime; choose from saliency, gradcam"):
        run.parse_methods("saliency,lime")
    assert run.parse_methods("gradcam, saliency,gradcam") == ("gradcam", "saliency")


def test_gradcam_on_wide_mlp_is_refused_in_one_line_and_keras_runs_have_their_child(tmp_path: Path) -> None:
    from parallel_vision.predict.model import open_run

    for framework in ("torch", "tensorflow", "jax"):
        mlp = fake_run(tmp_path / f"mlp-{framework}", model="wide_mlp", framework=framework)
        with pytest.raises(ConfigError, match="gradcam needs a convolutional layer and wide_mlp has none"):
            run.explain(mlp, ("saliency", "gradcam"), 10)
        child = run.check(open_run(fake_run(tmp_path / framework, framework=framework)), ("saliency",))
        assert child.endswith("torch.explain" if framework == "torch" else "keras.explain"), framework


def test_a_run_folder_without_model_pt_is_one_line_and_exit_2(tmp_path: Path) -> None:
    folder = fake_run(tmp_path / "run")
    (folder / "model.pt").unlink()
    out = cli(folder, "--method", "saliency")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "no model.pt" in out.stderr


# --- a real run -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits_run(trained: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_run(trained(**TORCH_DIGITS).out_dir, tmp_path_factory.mktemp("explain") / "run")


@pytest.fixture(scope="module")
def explained(digits_run: Path) -> dict[str, Any]:
    """saliency and Grad-CAM on 20 test images through the Python API: explain.json and the maps."""
    doc = run.explain(digits_run, ("saliency", "gradcam"), FEW, seed=0)
    with np.load(digits_run / "explain" / "explanations.npz") as saved:
        return {"doc": doc, "maps": {name: saved[name] for name in saved.files}}


def test_explain_gradcam_on_50_images_writes_the_maps_and_faithfulness_scores(digits_run: Path,
                                                                               explained: dict[str, Any]) -> None:
    out = cli(digits_run, "--method", "gradcam", "--images", IMAGES)
    assert out.returncode == 0, out.stderr
    with np.load(digits_run / "explain" / "explanations.npz") as saved:
        assert sorted(saved.files) == ["gradcam", "indices", "labels"]
        assert saved["gradcam"].shape == (IMAGES, 28, 28) and saved["gradcam"].dtype == np.float32
        # the 20 images of the API's run are among these 50, and in another process, in another batch, the same
        # model gives them the same maps, bit for bit
        where = np.searchsorted(saved["indices"], explained["maps"]["indices"])
        assert np.array_equal(saved["indices"][where], explained["maps"]["indices"])
        assert np.array_equal(saved["gradcam"][where], explained["maps"]["gradcam"])
        indices = saved["indices"].tolist()
    doc = json.loads((digits_run / "explain" / "explain.json").read_text())
    gradcam = doc["methods"]["gradcam"]
    assert 0 <= gradcam["deletion_auc"] <= 1 and 0 <= gradcam["insertion_auc"] <= 1 and gradcam["seconds"] > 0
    assert doc["indices"] == indices and doc["images"] == IMAGES and doc["seed"] == 0
    assert "gradcam" in out.stdout and "random order" in out.stdout
    page = (digits_run / "explain" / "explain.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "gradcam" in page


def test_the_maps_explain_the_true_label_of_a_stratified_sample(explained: dict[str, Any]) -> None:
    doc, maps = explained["doc"], explained["maps"]
    assert np.bincount(maps["labels"], minlength=10).tolist() == [FEW // 10] * 10
    assert doc["labels"] == maps["labels"].tolist() and len(doc["predicted"]) == FEW
    assert doc["agreement"] >= 0.85  # the run reaches ~95 % on its test images (measured: 20 of 20 here)
    assert maps["saliency"].shape == maps["gradcam"].shape == (FEW, 28, 28)
    assert (maps["gradcam"] >= 0).all()  # relu_attributions
    flat = maps["gradcam"].reshape(FEW, -1)
    assert doc["methods"]["gradcam"]["constant_maps"] == int((flat.max(axis=1) == flat.min(axis=1)).sum())


def test_saliency_and_gradcam_delete_the_class_faster_than_a_random_pixel_order(explained: dict[str, Any]) -> None:
    """Measured on these 20 images: deletion AUC 0.229 (saliency) and 0.274 (Grad-CAM) against 0.414 for a random
    order (on 500 images: 0.218, 0.273, 0.376)."""
    doc = explained["doc"]
    random = doc["faithfulness"]["random_order"]["deletion_auc"]
    for name in ("saliency", "gradcam"):
        assert doc["methods"][name]["deletion_auc"] < random - 0.05, name


def test_a_randomised_models_maps_do_not_rank_pixels_like_the_trained_models(explained: dict[str, Any]) -> None:
    """Adebayo et al. 2018: measured mean Spearman 0.082 (saliency) and 0.085 (Grad-CAM) on these 20 images."""
    for name in ("saliency", "gradcam"):
        check = explained["doc"]["methods"][name]["randomised_model"]
        assert check["spearman_mean"] < run.SANITY_THRESHOLD and check["passed"], name


# --- every method, in this process, on untrained models (the engine child's functions) -----------------------------

@pytest.fixture(scope="module")
def engine() -> Any:
    pytest.importorskip("captum")
    from parallel_vision.engines.torch import explain as torch_explain

    return torch_explain


def setup_of(engine: Any, model: str, seed: int = 0) -> Any:
    import torch

    from parallel_vision.config import RunConfig

    black = torch.full((1, 1, 1, 1), -0.4242)
    return engine.Setup(cfg=RunConfig(model=model), black=black, input_range=3.25, seed=seed)


def test_every_method_gives_one_map_per_image_and_smoothgrad_repeats_for_its_seed(engine: Any) -> None:
    from parallel_vision.config import RunConfig

    net = engine.randomised(RunConfig(), seed=0)
    x = np.random.default_rng(0).normal(size=(3, 28, 28, 1)).astype(np.float32)
    y = np.array([0, 3, 7])
    setup = setup_of(engine, "paper_cnn")
    for method in run.METHODS:
        maps = child.maps_of(method, engine.CaptumExplainer(net, setup), x, y)
        assert maps.shape == (3, 28, 28) and maps.dtype == np.float32 and np.isfinite(maps).all(), method
    smooth = child.maps_of("smoothgrad", engine.CaptumExplainer(net, setup), x, y)
    assert np.array_equal(smooth, child.maps_of("smoothgrad", engine.CaptumExplainer(net, setup), x, y))
    other_seed = engine.CaptumExplainer(net, setup_of(engine, "paper_cnn", seed=1))
    assert not np.array_equal(smooth, child.maps_of("smoothgrad", other_seed, x, y))


def test_gradcam_on_resnet18_is_layer3_upsampled_to_the_image(engine: Any) -> None:
    from parallel_vision.config import RunConfig

    net = engine.randomised(RunConfig(model="resnet18"), seed=0)
    assert engine.gradcam_layer(net, "resnet18") is net.layer3
    x = np.random.default_rng(0).normal(size=(2, 28, 28, 1)).astype(np.float32)
    explainer = engine.CaptumExplainer(net, setup_of(engine, "resnet18"))
    maps = child.maps_of("gradcam", explainer, x, np.array([1, 2]))
    assert maps.shape == (2, 28, 28) and (maps >= 0).all()


def test_gradcam_has_no_layer_in_wide_mlp(engine: Any) -> None:
    from parallel_vision.config import RunConfig

    with pytest.raises(ConfigError, match="no conv layer"):
        engine.gradcam_layer(engine.randomised(RunConfig(model="wide_mlp"), seed=0), "wide_mlp")


def test_the_childs_progress_reaches_the_parent_as_bars_with_the_time_left(tmp_path: Path) -> None:
    """The child declares its tasks and advances them (progress.json, replaced whole); the parent's bars show each
    task's count and an estimate of the time left (drawn here on an in-memory terminal)."""
    import io

    from rich.console import Console

    from parallel_vision.explain import progress

    assert progress.read(tmp_path) == []  # nothing written yet
    report = progress.Reporter(tmp_path, {"ig: maps": 500, "ig: curves": 500})
    report.advance("ig: maps", 100)
    report.advance("ig: maps", 400)  # a task done is written at once
    tasks = progress.read(tmp_path)
    assert [(t["name"], t["done"], t["total"]) for t in tasks] == [("ig: maps", 500, 500), ("ig: curves", 0, 500)]
    report.advance("ig: curves", 9999)
    assert progress.read(tmp_path)[1]["done"] == 500  # never past its total
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    with progress.watching(tmp_path, console):
        pass
    text = screen.getvalue()
    assert "ig: maps" in text and "500/500" in text and "left" in text
    quiet = Console(file=io.StringIO(), force_terminal=False)
    with progress.watching(tmp_path, quiet):  # not a terminal (a log, CI): no bars
        pass
    assert quiet.file.getvalue() == ""  # type: ignore[attr-defined]
