"""Each EDA analysis on real MNIST (small samples), its numbers cross-checked against direct numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("skimage")
pytest.importorskip("scipy")

from parallel_vision.data import DATASETS, load  # noqa: E402
from parallel_vision.eda import augment, correlation, embedding, features, normality, overview, stats  # noqa: E402
from parallel_vision.eda.base import AnalysisResult, jsonable, stratified_sample  # noqa: E402

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
NAMES = list(DATASETS["mnist"].class_names)


@pytest.fixture(scope="module")
def mnist(data_dir: Path):
    xtr, ytr = load("mnist", "train", data_dir=data_dir)
    xte, yte = load("mnist", "test", data_dir=data_dir)
    return xtr, ytr, xte, yte


@pytest.fixture(scope="module")
def small(mnist):
    """A stratified 2,000-image slice of the training split, and 500 test images."""
    xtr, ytr, xte, yte = mnist
    i = stratified_sample(ytr, 2000, np.random.default_rng(0))
    return xtr[i], ytr[i], xte[:500], yte[:500]


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def check_result(result: AnalysisResult, key: str, tmp_path: Path) -> None:
    """Numbers are JSON-able, the caption is prose, and every figure renders to a real PNG."""
    import json

    assert result.key == key
    assert result.caption and len(result.caption) > 40
    assert json.loads(json.dumps(jsonable(result.numbers), allow_nan=False)) == jsonable(result.numbers)
    assert result.figures
    for name, fig in result.figures.items():
        path = tmp_path / f"{key}_{name}.png"
        fig.savefig(path, format="png", dpi=40)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 1000


def test_overview_counts_and_format(mnist, tmp_path: Path) -> None:
    xtr, ytr, xte, yte = mnist
    r = overview.overview(xtr, ytr, xte, yte, NAMES)
    check_result(r, "overview", tmp_path)
    assert r.numbers["train"]["class_counts"] == MNIST_TRAIN_COUNTS
    assert r.numbers["test"]["class_counts"] == MNIST_TEST_COUNTS
    assert r.numbers["train"]["n_images"] == 60000 and r.numbers["test"]["n_images"] == 10000
    assert r.numbers["train"]["image_shape"] == [28, 28] and r.numbers["train"]["dtype"] == "uint8"
    assert r.numbers["train"]["largest_class"] == 1 and r.numbers["train"]["smallest_class"] == 5
    assert "60,000 training and 10,000 test" in r.caption


def test_sample_grid_picks_from_each_class(small, tmp_path: Path) -> None:
    x, y, _, _ = small
    r = overview.sample_grid(x, y, NAMES, rng(), per_class=3)
    check_result(r, "samples", tmp_path)
    idx = np.array(r.numbers["indices"])
    assert idx.shape == (10, 3)
    assert (y[idx] == np.arange(10)[:, None]).all()


def test_descriptive_stats_match_numpy_on_full_train(mnist, tmp_path: Path) -> None:
    xtr, ytr, xte, _ = mnist
    r = stats.descriptive_stats(xtr, ytr, xte, NAMES)
    check_result(r, "descriptive", tmp_path)
    n = r.numbers
    assert n["train"]["mean"] == pytest.approx(33.318, abs=1e-3)
    assert n["train"]["mean_01"] == pytest.approx(0.1307, abs=1e-4)
    assert n["train"]["std_01"] == pytest.approx(0.3081, abs=1e-4)
    assert n["train"]["std"] == pytest.approx(xtr.std(dtype=np.float64), abs=1e-3)
    assert n["test"]["mean"] == pytest.approx(xte.mean(dtype=np.float64), abs=1e-3)
    for c in (0, 1, 9):
        sub = xtr[ytr == c]
        assert n["per_class"][c]["mean"] == pytest.approx(sub.mean(dtype=np.float64), abs=1e-3)
        assert n["per_class"][c]["std"] == pytest.approx(sub.std(dtype=np.float64), abs=1e-3)
    np.testing.assert_allclose(n["mean_map"], xtr.mean(axis=0, dtype=np.float64), atol=1e-3)
    np.testing.assert_allclose(n["std_map"], xtr.std(axis=0, dtype=np.float64), atol=1e-3)
    assert sum(n["histogram"]) == xtr.size
    assert n["zero_fraction"] == pytest.approx((xtr == 0).mean(), abs=1e-6)
    assert n["constant_pixels"] == int((xtr.std(axis=0) == 0).sum())


def test_boxplot_numbers_match_percentiles(small, tmp_path: Path) -> None:
    x, y, _, _ = small
    r = stats.intensity_boxplots(x, y, NAMES)
    check_result(r, "boxplots", tmp_path)
    per_image = x.reshape(len(x), -1).mean(axis=1)
    for c in range(10):
        q1, med, q3 = np.percentile(per_image[y == c], [25, 50, 75])
        s = r.numbers["per_class"][c]
        assert (s["q1"], s["median"], s["q3"]) == pytest.approx((q1, med, q3), abs=1e-3)
        assert s["whisker_low"] >= q1 - 1.5 * (q3 - q1) - 1e-3
    assert r.numbers["n_images"] == len(x)


def test_avg_pool_is_block_mean() -> None:
    a = rng().integers(0, 256, size=(3, 28, 28)).astype(float)
    p = correlation.avg_pool(a, 2)
    assert p.shape == (3, 14, 14)
    assert p[1, 3, 5] == pytest.approx(a[1, 6:8, 10:12].mean())


def test_correlation_pairs_are_real_correlations(small, tmp_path: Path) -> None:
    x, _, _, _ = small
    r = correlation.pixel_correlation(x, rng(), sample=1500, top=5)
    check_result(r, "correlation", tmp_path)
    n = r.numbers
    assert n["sample_size"] == 1500
    heat = np.array(n["pooled_correlation"], dtype=float)
    assert heat.shape == (196, 196)
    finite = ~np.isnan(np.diag(heat))
    assert np.allclose(np.diag(heat)[finite], 1.0)
    # Recompute the top pair directly from the same sample.
    idx = np.sort(rng().choice(len(x), size=1500, replace=False))
    flat = x[idx].reshape(1500, -1).astype(float)
    top = n["top_pairs"][0]
    a, b = top["a"][0] * 28 + top["a"][1], top["b"][0] * 28 + top["b"][1]
    assert np.corrcoef(flat[:, a], flat[:, b])[0, 1] == pytest.approx(top["r"], abs=1e-4)
    assert flat[:, a].std() > 0 and flat[:, b].std() > 0
    rs = [p["r"] for p in n["top_pairs"]]
    assert rs == sorted(rs, reverse=True) and len(rs) == 5
    assert n["full_constant"] == int((flat.std(axis=0) == 0).sum())


def test_normality_tests_agree_with_scipy(small, tmp_path: Path) -> None:
    from scipy import stats as sps

    x, _, _, _ = small
    r = normality.normality_tests(x, rng(), pixel_sample_images=300)
    check_result(r, "normality", tmp_path)
    per_image = x.reshape(len(x), -1).mean(axis=1)
    n = r.numbers["per_image_mean"]
    assert n["dagostino_pearson"]["p"] == pytest.approx(sps.normaltest(per_image).pvalue, rel=1e-6)
    assert n["shapiro_wilk"]["n"] == len(x)  # < 5000: the whole sample
    assert n["shapiro_wilk"]["p"] == pytest.approx(sps.shapiro(per_image).pvalue, rel=1e-6)
    for test in ("dagostino_pearson", "shapiro_wilk", "kolmogorov_smirnov"):
        p = n[test]["p"]
        assert n[test]["verdict"].startswith("p ")
        assert ("reject" in n[test]["verdict"]) == (p < 0.05)


def test_normality_summary_does_not_reject_normal_data_and_caps_shapiro() -> None:
    values = rng(1).normal(10, 2, size=8000)
    s = normality.normality_summary(values, rng(2))
    assert s["shapiro_wilk"]["n"] == 5000
    assert s["dagostino_pearson"]["p"] > 0.01 and s["kolmogorov_smirnov"]["p"] > 0.01
    assert "no evidence" in normality.interpret(0.5) and "reject" in normality.interpret(1e-9)


def test_edges_and_hog(small, tmp_path: Path) -> None:
    from skimage.feature import canny

    x, y, _, _ = small
    r = features.edge_detection(x, y, NAMES, rng(), stats_sample=200)
    check_result(r, "edges", tmp_path)
    ex = r.numbers["examples"][3]
    assert ex["class"] == 3
    assert ex["canny_edge_pixels"] == int(canny(x[ex["index"]] / 255.0, sigma=1.0).sum())
    assert 0 < r.numbers["canny_edge_fraction"] < 0.5

    h = features.hog_features(x, y, NAMES, rng())
    check_result(h, "hog", tmp_path)
    assert h.numbers["descriptor_length"] == 324 == h.numbers["expected_length"]
    for alt in h.numbers["alternatives"]:
        assert alt["length"] == features.hog_length((28, 28), 9, alt["pixels_per_cell"], alt["cells_per_block"])


def test_rotation_and_augmentation(small, tmp_path: Path) -> None:
    x, y, _, _ = small
    r = augment.rotation_examples(x, y, NAMES, rng(), stats_sample=50)
    check_result(r, "rotation", tmp_path)
    zero = next(p for p in r.numbers["per_angle"] if p["angle"] == 0)
    assert zero["mean_abs_change"] == pytest.approx(0, abs=1e-9) and zero["ink_retained"] == pytest.approx(1)

    a = augment.augmentation_examples(x, y, NAMES, rng(), n_examples=2, n_variants=2, stats_sample=30)
    check_result(a, "augmentation", tmp_path)
    for ex in a.numbers["examples"]:
        for p in ex["affine"]:
            assert abs(p["rotation_deg"]) <= 15 and 0.9 <= p["zoom"] <= 1.1 and abs(p["shift_x"]) <= 3
    img = x[0]
    same, _ = augment.random_affine(img, rng(), rotation_deg=0, shift_px=0, zoom=(1.0, 1.0))
    np.testing.assert_allclose(same, img / 255.0, atol=1e-9)
    still, d = augment.elastic_distort(img, rng(), alpha=0.0)
    np.testing.assert_allclose(still, img / 255.0, atol=1e-9)
    assert d["mean_displacement_px"] == 0


def test_class_means(small, tmp_path: Path) -> None:
    x, y, _, _ = small
    r = stats.class_means(x, y, NAMES)
    check_result(r, "class_means", tmp_path)
    d = np.array(r.numbers["distance_matrix"])
    assert np.allclose(d, d.T) and np.allclose(np.diag(d), 0)
    m0, m1 = x[y == 0].mean(0) / 255, x[y == 1].mean(0) / 255
    assert d[0, 1] == pytest.approx(np.linalg.norm(m0 - m1), abs=1e-3)
    assert r.numbers["mean_intensity"][1] == pytest.approx(x[y == 1].mean(), abs=1e-3)


def test_pca_curve_reconstruction_and_tsne(small, tmp_path: Path) -> None:
    x, y, xte, yte = small
    r = embedding.pca_analysis(x, y, NAMES, rng(), scatter_sample=500)
    check_result(r, "pca", tmp_path)
    cum = np.array(r.numbers["cumulative_explained_variance"])
    assert np.all(np.diff(cum) >= -1e-9) and cum[-1] == pytest.approx(1.0, abs=1e-4)
    for t, k in r.numbers["components_needed"].items():
        assert cum[k - 1] >= int(t) / 100 - 1e-6
        assert k == 1 or cum[k - 2] < int(t) / 100
    n = r.numbers["components_needed"]
    assert n["90"] < n["95"] < n["99"]
    assert r.numbers["scatter_sample"] == 500

    pca = r.extras["pca"]
    rec = embedding.pca_reconstruction(x, xte, yte, NAMES, rng(), pca=pca, n_examples=4)
    check_result(rec, "reconstruction", tmp_path)
    mse = rec.numbers["mse"]
    assert rec.numbers["components"] == [10, 50, 150]
    assert mse[0] > mse[1] > mse[2] > 0
    xf = xte.reshape(len(xte), -1) / 255.0
    direct = pca.inverse_transform(np.pad(pca.transform(xf)[:, :50], ((0, 0), (0, pca.n_components_ - 50))))
    assert mse[1] == pytest.approx(((direct - xf) ** 2).mean(), rel=1e-4)

    t = embedding.tsne_embedding(x, y, NAMES, rng(), sample=300, pca=pca, max_iter=250, n_jobs=1)
    check_result(t, "tsne", tmp_path)
    assert t.numbers["sample_size"] == 300 and t.numbers["pca_dims"] == 50
    assert sum(t.numbers["class_counts"]) == 300 and min(t.numbers["class_counts"]) >= 25
    assert 0 < t.numbers["knn_class_agreement_tsne"] <= 1


def test_stratified_sample_keeps_class_shares() -> None:
    labels = np.repeat(np.arange(4), [100, 200, 300, 400])
    idx = stratified_sample(labels, 100, rng())
    assert len(idx) == 100 and len(set(idx)) == 100
    assert np.bincount(labels[idx]).tolist() == [10, 20, 30, 40]
    assert len(stratified_sample(labels, 5000, rng())) == 1000
