"""`pvision eda` on the other datasets: colour (CIFAR-10 format), KMNIST format, and the refusal of synthetic.

The real CIFAR-10 and KMNIST files are not reachable here: the colour analyses are checked on a small
in-memory RGB set with structure in it (class tints, smooth gradients), and the whole report runs on
fixture files in the exact canonical formats whose checksums a monkeypatched catalogue entry pins.
"""

from __future__ import annotations

import dataclasses
import gzip
import html
import json
import struct
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("skimage")
pytest.importorskip("scipy")

from cifar_format import CIFAR_ARCHIVE, make_cifar, md5, tar_gz  # noqa: E402 - tests/ is on sys.path
from parallel_vision.data import DATASETS, FileSpec, catalog  # noqa: E402
from parallel_vision.eda import SECTIONS, augment, correlation, embedding, features, normality, overview, stats  # noqa: E402
from parallel_vision.eda.base import LUMA_WEIGHTS, image_grid, is_colour, jsonable, luminance  # noqa: E402
from parallel_vision.eda.page import EdaOptions, heading, run_eda  # noqa: E402

CIFAR_NAMES = list(DATASETS["cifar10"].class_names)
KMNIST_NAMES = list(DATASETS["kmnist"].class_names)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def colour() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """400 train / 60 test RGB images 32×32: a class-dependent tint over a smooth gradient, plus noise."""
    r = rng(11)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(n) % 10
        yy, xx = np.mgrid[0:32, 0:32] / 31.0
        tint = np.stack([np.linspace(40, 200, 10), np.linspace(200, 60, 10), (np.arange(10) % 3) * 70 + 40], 1)
        base = tint[labels][:, None, None, :] * (0.6 + 0.4 * (yy + xx)[None, :, :, None] / 2)
        noisy = base + r.normal(0, 25, size=(n, 32, 32, 3))
        return np.clip(noisy, 0, 255).astype(np.uint8), labels

    xtr, ytr = make(400)
    xte, yte = make(60)
    return xtr, ytr, xte, yte


def mosaic_shape(fig) -> tuple[int, ...]:
    """The shape of the one image an `image_grid` figure draws."""
    return fig.axes[0].images[0].get_array().shape


def luma(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64) @ np.array(LUMA_WEIGHTS)


def test_luminance_is_bt601_and_layouts_are_checked() -> None:
    px = np.array([[[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]]], dtype=np.uint8)
    np.testing.assert_allclose(
        luminance(px)[0, 0], [76.245, 149.685, 29.07, 0.299 * 10 + 0.587 * 20 + 0.114 * 30], rtol=1e-6
    )
    assert is_colour(px) and not is_colour(np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="NHWC"):
        is_colour(np.zeros((2, 3, 32, 32), np.uint8))  # NCHW is refused, never read as 3 rows of pixels


def test_image_grid_draws_rgb_32x32_panels() -> None:
    fig = image_grid(rng().random((2, 3, 32, 32, 3)), vmin=0, vmax=1)
    assert mosaic_shape(fig) == (2 * 34 - 2, 3 * 34 - 2, 3)  # 32-pixel panels, 2-pixel gutters
    assert mosaic_shape(image_grid(rng().random((1, 2, 28, 28)))) == (28, 2 * 30 - 2)


def test_overview_and_samples_on_colour(colour, tmp_path: Path) -> None:
    xtr, ytr, xte, yte = colour
    r = overview.overview(xtr, ytr, xte, yte, CIFAR_NAMES)
    assert r.numbers["train"]["image_shape"] == [32, 32, 3] and r.numbers["train"]["channels"] == 3
    assert "32×32×3 uint8 RGB colour" in r.caption and r.input == "colour" and r.note
    s = overview.sample_grid(xtr, ytr, CIFAR_NAMES, rng(), per_class=4)
    assert mosaic_shape(s.figures["samples"]) == (10 * 34 - 2, 4 * 34 - 2, 3)
    assert s.input == "colour"


def test_descriptive_stats_per_channel_equal_numpy(colour) -> None:
    xtr, ytr, xte, _ = colour
    r = stats.descriptive_stats(xtr, ytr, xte, CIFAR_NAMES)
    n = r.numbers
    assert r.input == "colour" and "per channel" in r.note
    assert n["channels"] == ["R", "G", "B"]
    for c, name in enumerate("RGB"):
        for split, x in (("train", xtr), ("test", xte)):
            ch = n[split]["per_channel"][c]
            assert ch["channel"] == name
            assert ch["mean"] == pytest.approx(x[..., c].mean(dtype=np.float64), abs=1e-3)
            assert ch["std"] == pytest.approx(x[..., c].std(dtype=np.float64), abs=1e-3)
            assert ch["mean_01"] == pytest.approx(x[..., c].mean() / 255, abs=1e-6)
        assert n["channel_histograms"][name] == np.bincount(xtr[..., c].ravel(), minlength=256).tolist()
        assert n["per_class"][3]["channel_mean"][c] == pytest.approx(xtr[ytr == 3][..., c].mean(), abs=1e-3)
    # Pooled over every channel value, as numpy pools them.
    assert n["train"]["mean"] == pytest.approx(xtr.mean(dtype=np.float64), abs=1e-3)
    assert n["train"]["std"] == pytest.approx(xtr.std(dtype=np.float64), abs=1e-3)
    assert sum(n["histogram"]) == xtr.size
    np.testing.assert_allclose(n["mean_map"], xtr.mean(axis=0, dtype=np.float64), atol=1e-3)
    assert np.array(n["std_map"]).shape == (32, 32, 3)
    assert len(r.figures["pixel_maps"].axes) == 12  # 3 mean + 3 std maps, each with a colour bar
    assert "R/G/B" in r.caption and "32×32 positions × 3 channels" in r.caption
    assert r.tables[0].rows[0][:2] == ["train", "R"]


def test_boxplots_and_normality_run_on_luminance(colour) -> None:
    from scipy import stats as sps

    xtr, ytr, _, _ = colour
    b = stats.intensity_boxplots(xtr, ytr, CIFAR_NAMES)
    assert b.input == "luminance" and "ITU-R BT.601" in b.note and "luminance" in b.caption
    per_image = luma(xtr).reshape(len(xtr), -1).mean(axis=1)
    q1, med, q3 = np.percentile(per_image[ytr == 2], [25, 50, 75])
    assert (b.numbers["per_class"][2]["q1"], b.numbers["per_class"][2]["median"]) == pytest.approx((q1, med), abs=1e-3)

    r = normality.normality_tests(xtr, rng())
    assert r.input == "luminance"
    assert r.numbers["per_image_mean"]["dagostino_pearson"]["p"] == pytest.approx(
        sps.normaltest(per_image).pvalue, rel=1e-6
    )
    # The grey-only part is refused, with its one sentence in the numbers, the note and the caption.
    assert r.numbers["nonzero_pixels"] == {"refused": normality.NONZERO_REFUSED}
    assert r.numbers["pixel_sample_images"] is None
    assert normality.NONZERO_REFUSED in r.note and normality.NONZERO_REFUSED in r.caption
    assert [row[0] for row in r.tables[0].rows] == ["per image mean"] * 3


def test_correlation_on_luminance_pools_32x32_to_16x16(colour) -> None:
    xtr, _, _, _ = colour
    r = correlation.pixel_correlation(xtr, rng(), sample=300, top=5)
    n = r.numbers
    assert r.input == "luminance" and n["image_shape"] == [32, 32] and n["pooled_shape"] == [16, 16]
    assert np.array(n["pooled_correlation"], dtype=float).shape == (256, 256)
    idx = np.sort(rng().choice(len(xtr), size=300, replace=False))
    flat = luma(xtr[idx]).reshape(300, -1)
    top = n["top_pairs"][0]
    a, b = top["a"][0] * 32 + top["a"][1], top["b"][0] * 32 + top["b"][1]
    assert np.corrcoef(flat[:, a], flat[:, b])[0, 1] == pytest.approx(top["r"], abs=1e-4)
    assert "of 1024 pixels" in r.caption and "luminance" in r.caption


def test_edges_on_luminance_and_hog_on_colour(colour) -> None:
    from skimage.feature import canny, hog

    xtr, ytr, _, _ = colour
    e = features.edge_detection(xtr, ytr, CIFAR_NAMES, rng(), stats_sample=60)
    assert e.input == "luminance" and e.numbers["input"].startswith("luminance")
    ex = e.numbers["examples"][4]
    assert ex["canny_edge_pixels"] == int(canny(luma(xtr[ex["index"]]) / 255.0, sigma=1.0).sum())
    assert mosaic_shape(e.figures["edges"]) == (3 * 34 - 2, 10 * 34 - 2, 3)  # colour originals on top

    h = features.hog_features(xtr, ytr, CIFAR_NAMES, rng())
    assert h.input == "colour" and "channel" in h.note
    assert h.numbers["params"]["pixels_per_cell"] == [8, 8] and h.numbers["image_shape"] == [32, 32, 3]
    assert h.numbers["descriptor_length"] == h.numbers["expected_length"] == 324
    i = h.numbers["examples"][0]["index"]
    direct = hog(
        xtr[i] / 255.0,
        orientations=9,
        pixels_per_cell=(8, 8),
        cells_per_block=(2, 2),
        block_norm="L2-Hys",
        channel_axis=-1,
    )
    assert h.numbers["examples"][0]["l2_norm"] == pytest.approx(np.linalg.norm(direct), abs=1e-3)
    assert [a["pixels_per_cell"] for a in h.numbers["alternatives"]] == [[4, 4], [8, 8], [8, 8], [16, 16]]
    for alt in h.numbers["alternatives"]:
        assert alt["length"] == features.hog_length((32, 32), 9, alt["pixels_per_cell"], alt["cells_per_block"])
    assert "4×4 cells on a 32×32 image" in h.caption


def test_rotation_and_augmentation_move_all_channels(colour) -> None:
    xtr, ytr, _, _ = colour
    r = augment.rotation_examples(xtr, ytr, CIFAR_NAMES, rng(), stats_sample=20)
    assert r.input == "colour"
    zero = next(p for p in r.numbers["per_angle"] if p["angle"] == 0)
    assert zero["ink_retained"] == pytest.approx(1) and zero["mean_abs_change"] == pytest.approx(0, abs=1e-9)
    assert mosaic_shape(r.figures["rotation"])[2:] == (3,)

    img = xtr[5]
    same, _ = augment.random_affine(img, rng(), rotation_deg=0, shift_px=0, zoom=(1.0, 1.0))
    np.testing.assert_allclose(same, img / 255.0, atol=1e-9)
    still, _ = augment.elastic_distort(img, rng(), alpha=0.0)
    np.testing.assert_allclose(still, img / 255.0, atol=1e-9)
    # One displacement field for all three channels: a grey-valued image stays grey.
    grey3 = np.repeat(xtr[7, ..., :1], 3, axis=-1)
    moved, d = augment.elastic_distort(grey3, rng(3))
    assert moved.shape == (32, 32, 3) and d["mean_displacement_px"] > 0
    np.testing.assert_allclose(moved[..., 0], moved[..., 2])
    a = augment.augmentation_examples(xtr, ytr, CIFAR_NAMES, rng(), n_examples=2, n_variants=2, stats_sample=10)
    assert a.input == "colour" and mosaic_shape(a.figures["augmentation"]) == (2 * 34 - 2, 5 * 34 - 2, 3)


def test_class_means_pca_tsne_reconstruction_on_colour(colour) -> None:
    xtr, ytr, xte, yte = colour
    m = stats.class_means(xtr, ytr, CIFAR_NAMES)
    d = np.array(m.numbers["distance_matrix"])
    m0, m1 = xtr[ytr == 0].mean(0) / 255, xtr[ytr == 1].mean(0) / 255
    assert d[0, 1] == pytest.approx(np.linalg.norm(m0 - m1), abs=1e-3)
    assert mosaic_shape(m.figures["class_means"]) == (32, 10 * 34 - 2, 3)

    p = embedding.pca_analysis(xtr, ytr, CIFAR_NAMES, rng(), scatter_sample=200)
    assert p.input == "colour" and "3,072 values" in p.note
    pca = p.extras["pca"]
    assert pca.components_.shape[1] == 32 * 32 * 3
    assert mosaic_shape(p.figures["pca_components"]) == (32, 10 * 34 - 2, 3)
    rec = embedding.pca_reconstruction(xtr, xte, yte, CIFAR_NAMES, rng(), pca=pca, n_examples=3)
    xf = xte.reshape(len(xte), -1) / 255.0
    direct = pca.inverse_transform(np.pad(pca.transform(xf)[:, :50], ((0, 0), (0, pca.n_components_ - 50))))
    assert rec.numbers["mse"][1] == pytest.approx(((direct - xf) ** 2).mean(), rel=1e-4)
    assert mosaic_shape(rec.figures["reconstruction"])[2] == 3
    t = embedding.tsne_embedding(xtr, ytr, CIFAR_NAMES, rng(), sample=100, pca=pca, max_iter=250, n_jobs=1)
    assert t.input == "colour" and t.numbers["sample_size"] == 100


# ----------------------------------------------------------------------------- whole reports
def _run_cli(args: list[str]) -> None:
    from parallel_vision.cli import main

    try:
        main(args)
    except SystemExit as exc:  # typer's standalone mode exits 0 on success
        assert exc.code in (0, None), exc.code


def test_cifar10_report_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`pvision eda --dataset cifar10` on a canonical-format archive: every section notes colour; HTML renders."""
    fx = make_cifar(per_batch=24, test_count=30)  # 120 train (12 per class), 30 test
    archive = tar_gz(fx.members)
    raw = tmp_path / "data" / "cifar10" / "raw"
    raw.mkdir(parents=True)
    (raw / CIFAR_ARCHIVE).write_bytes(archive)
    monkeypatch.setitem(catalog.DATASETS, "cifar10", fx.spec(archive))
    monkeypatch.setenv("PVISION_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "eda-cifar"
    _run_cli(
        [
            "eda",
            "--dataset",
            "cifar10",
            "--out",
            str(out),
            "--sample",
            "60",
            "--no-progress",
            "--data-dir",
            str(tmp_path / "data"),
        ]
    )

    doc = json.loads((out / "eda.json").read_text())
    assert doc["dataset"] == "cifar10" and doc["colour"] is True
    assert doc["image_shape"] == [32, 32, 3] and doc["channels"] == 3
    assert doc["class_names"] == CIFAR_NAMES
    sections = doc["sections"]
    assert list(sections) == [k for k, _ in SECTIONS]
    inputs = {k: s["input"] for k, s in sections.items()}
    assert set(inputs.values()) == {"colour", "luminance"}
    assert {k for k, v in inputs.items() if v == "luminance"} == {"boxplots", "correlation", "normality", "edges"}
    assert all(s["note"] for s in sections.values())
    assert sections["normality"]["numbers"]["nonzero_pixels"] == {"refused": normality.NONZERO_REFUSED}
    assert doc["samples"]["normality_nonzero_pixel_images"] is None

    train = fx.images["train"]
    per_channel = sections["descriptive"]["numbers"]["train"]["per_channel"]
    for c in range(3):
        assert per_channel[c]["mean"] == pytest.approx(train[..., c].mean(dtype=np.float64), abs=1e-3)
        assert per_channel[c]["std"] == pytest.approx(train[..., c].std(dtype=np.float64), abs=1e-3)
    assert sections["overview"]["numbers"]["train"]["image_shape"] == [32, 32, 3]
    assert sections["correlation"]["numbers"]["pooled_shape"] == [16, 16]
    assert sections["hog"]["numbers"]["params"]["pixels_per_cell"] == [8, 8]
    assert sections["pca"]["numbers"]["n_components"] == 120  # min(120 images, 3,072 values)
    assert sections["reconstruction"]["numbers"]["components"] == [10, 50]  # 150 > 120 components: left out

    page = html.unescape((out / "eda.html").read_text())
    for i, (key, title) in enumerate(SECTIONS):
        assert f"<h2>{heading(i + 1, title)}</h2>" in page
        assert sections[key]["note"] in page and sections[key]["caption"] in page
    assert page.count('<p class="note">') == 14
    assert "32×32 RGB colour images" in page and "airplane" in page
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) >= 14 and page.count("data:image/png;base64,") == len(pngs)


def _idx_gz(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


def test_kmnist_report_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """KMNIST's IDX files (28×28 grey, Kuzushiji class names): the same report as for MNIST, no colour notes."""
    r = rng(5)
    # Strokes on a black background, like the real characters: mostly 0, some bright pixels.
    xs = {
        s: (r.random((n, 28, 28)) > 0.8) * r.integers(100, 256, (n, 28, 28)) for s, n in (("train", 120), ("test", 30))
    }
    ys = {s: np.arange(len(x)) % 10 for s, x in xs.items()}
    raw = tmp_path / "data" / "kmnist" / "raw"
    raw.mkdir(parents=True)
    real = DATASETS["kmnist"]
    splits = []
    for part in real.splits:
        images, labels = _idx_gz(xs[part.name]), _idx_gz(ys[part.name])
        (raw / part.images.name).write_bytes(images)
        (raw / part.labels.name).write_bytes(labels)
        splits.append(
            dataclasses.replace(
                part,
                images=FileSpec(part.images.name, None, md5(images)),
                labels=FileSpec(part.labels.name, None, md5(labels)),
                count=len(ys[part.name]),
            )
        )
    monkeypatch.setitem(catalog.DATASETS, "kmnist", dataclasses.replace(real, splits=tuple(splits), mirrors=()))
    monkeypatch.setenv("PVISION_CACHE_DIR", str(tmp_path / "cache"))
    report = run_eda(
        EdaOptions(dataset="kmnist", out_dir=tmp_path / "eda-kmnist", tsne_sample=60, data_dir=tmp_path / "data"),
        progress=False,
    )
    doc = json.loads(report.json_path.read_text())
    assert doc["colour"] is False and doc["image_shape"] == [28, 28] and doc["class_names"] == KMNIST_NAMES
    assert all(s["input"] == "grey" and s["note"] == "" for s in doc["sections"].values())
    numbers = {k: s["numbers"] for k, s in doc["sections"].items()}
    assert numbers["overview"]["train"]["class_counts"] == [12] * 10
    assert numbers["descriptive"]["train"]["mean"] == pytest.approx(xs["train"].mean(), abs=1e-3)
    assert numbers["hog"]["descriptor_length"] == 324 and numbers["correlation"]["pooled_shape"] == [14, 14]
    assert numbers["normality"]["nonzero_pixels"]["n"] > 0
    page = html.unescape(report.html_path.read_text())
    assert '<p class="note">' not in page and "28×28 grey images" in page
    for name in KMNIST_NAMES:
        assert f"<td>{name}</td>" in page  # the Kuzushiji class names in the tables, never digits
    assert json.loads(json.dumps(jsonable(doc), allow_nan=False)) == doc


# ----------------------------------------------------------------------------- CLI
@pytest.mark.parametrize("name", ["synthetic", "cifar100"])
def test_cli_refuses_synthetic_and_unknown_in_one_line(name: str, tmp_path: Path, capsys) -> None:
    from parallel_vision.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["eda", "--dataset", name, "--out", str(tmp_path / "x"), "--no-progress"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("pvision: error: ") and err.count("\n") == 1 and name in err
    assert "mnist, fashion-mnist, kmnist, cifar10" in err
    if name == "synthetic":
        assert "random pixels" in err
    assert not (tmp_path / "x").exists()


def test_cli_help_lists_the_datasets() -> None:
    from typer.testing import CliRunner

    from parallel_vision.cli import app

    result = CliRunner().invoke(app, ["eda", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for name in DATASETS:
        assert name in text
    assert "synthetic" in text
