"""`pvision predict` on real runs and real images.

The oracle: a run's own MNIST test images, saved as PNG and predicted through the CLI, give exactly the run's
predictions.npy, for a torch, a TensorFlow and a JAX run (the runs of tests/shared_runs.py, trained once per
session). Bad files among good ones are one line each and exit 1; images that ship with scikit-learn and
scikit-image go through the invert / fit / resize paths, with each step recorded.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from parallel_vision.data import load
from parallel_vision.predict.images import Target, decode, load_image, preprocess
from shared_runs import JAX_SMALL, TF_SMALL, TORCH_DIGITS, TORCH_SMALL  # tests/ on sys.path

HAS_TF = importlib.util.find_spec("tensorflow") is not None
HAS_JAX = importlib.util.find_spec("jax") is not None and importlib.util.find_spec("keras") is not None


def cli(*args: object, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-m", "parallel_vision", "predict", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)


def save_test_pngs(folder: Path, data_dir: Path, n: int) -> np.ndarray:
    """The first `n` MNIST test images as folder/NNNNN.png (sorted = test-set order); their labels."""
    images, labels = load("mnist", "test", data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(images[i]).save(folder / f"{i:05d}.png")
    return labels[:n]


def bomb_png(path: Path, side: int = 100_000) -> Path:
    """A 1×1 PNG whose header claims side×side pixels: past Pillow's MAX_IMAGE_PIXELS before a byte is decoded."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes of header
    ihdr[4:12] = struct.pack(">II", side, side)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path.write_bytes(bytes(data))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("config", [
    pytest.param(TORCH_SMALL, id="torch"),
    pytest.param(TF_SMALL, id="tensorflow",
                 marks=[pytest.mark.tensorflow, pytest.mark.skipif(not HAS_TF, reason="no TensorFlow")]),
    pytest.param(JAX_SMALL, id="jax", marks=[pytest.mark.jax, pytest.mark.skipif(not HAS_JAX, reason="no JAX")]),
])
def test_a_runs_test_images_saved_as_png_reproduce_its_predictions_exactly(
        trained: Any, data_dir: Path, tmp_path: Path, config: dict[str, Any]) -> None:
    out = trained(**config).out_dir
    n = 500  # the first 500 test images: all of the torch and TensorFlow runs', JAX_SMALL's evaluated 10,000
    save_test_pngs(tmp_path / "png", data_dir, n)
    proc = cli(out, tmp_path / "png", "--format", "json", "--out", tmp_path / "p.json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["framework"] == config.get("framework", "torch") and len(doc["predictions"]) == n
    assert all(p["preprocessing"] == ["unchanged (already the dataset's shape and polarity)"]
               for p in doc["predictions"])
    predicted = np.array([p["label"] for p in doc["predictions"]])
    assert np.array_equal(predicted, np.load(out / "predictions.npy")[:n])


@pytest.fixture(scope="module")
def torch_run(trained: Any) -> Path:
    return trained(**TORCH_SMALL).out_dir


@pytest.mark.slow
def test_broken_files_among_good_ones_are_one_line_each_and_exit_1(
        torch_run: Path, data_dir: Path, tmp_path: Path) -> None:
    labels = save_test_pngs(tmp_path / "good", data_dir, 3)
    whole = (tmp_path / "good" / "00001.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "notes.txt").write_text("not an image\n")
    bomb_png(tmp_path / "bomb.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("no images here\n")
    bad = [tmp_path / "truncated.png", tmp_path / "notes.txt", tmp_path / "bomb.png", tmp_path / "empty"]
    proc = cli(torch_run, tmp_path / "good", *bad, "--format", "json", "--top-k", "3")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 4, proc.stderr
    assert all(line.startswith("pvision: error: ") for line in lines)
    reasons = dict(zip(map(str, bad), ["truncated or corrupt", "not an image", "decompression bomb", "no image"],
                       strict=True))
    for line in lines:
        name = next(n for n in reasons if f"error: {n}: " in line)
        assert reasons.pop(name) in line
    doc = json.loads(proc.stdout)
    assert [Path(p["file"]).name for p in doc["predictions"]] == ["00000.png", "00001.png", "00002.png"]
    assert [p["label"] for p in doc["predictions"]] == np.load(torch_run / "predictions.npy")[:3].tolist()
    assert len(doc["errors"]) == 4 and doc["run_id"] and doc["top_k"] == 3
    for p in doc["predictions"]:
        assert [t["label"] for t in p["top_k"]][0] == p["label"] and len(p["top_k"]) == 3
        assert p["probability"] == p["top_k"][0]["probability"] >= p["top_k"][1]["probability"]
        assert p["class_name"] == str(p["label"])
    assert labels.shape == (3,)


@pytest.mark.slow
def test_load_digits_8x8_through_invert_and_fit_beats_chance(trained: Any, tmp_path: Path) -> None:
    """scikit-learn's 8×8 digits (0..16, out of distribution) fitted into 20×20 and centred by mass, predicted by
    a run that reaches ~95 % on MNIST (TORCH_DIGITS): measured 72.6 % on the first 500 (chance: 10 %)."""
    from sklearn.datasets import load_digits

    run = trained(**TORCH_DIGITS).out_dir
    digits = load_digits()
    folder = tmp_path / "digits"
    folder.mkdir()
    n = 500
    for i in range(n):
        Image.fromarray(np.round(digits.images[i] * 255 / 16).astype(np.uint8)).save(folder / f"{i:04d}.png")
    proc = cli(run, folder, "--format", "csv", "--out", tmp_path / "d.csv", "--save-inputs", tmp_path / "seen")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader((tmp_path / "d.csv").open()))
    accuracy = float(np.mean([int(r["label"]) == digits.target[i] for i, r in enumerate(rows)]))
    print(f"load_digits accuracy through predict: {accuracy:.3f} on {n} images")
    assert accuracy > 0.5  # chance is 0.10; a preprocessing slip (no inversion, no centring) falls near it
    assert "fitted into 20×20" in rows[0]["preprocessing"] and "centre of mass" in rows[0]["preprocessing"]
    seen = sorted((tmp_path / "seen").glob("*.png"))
    assert len(seen) == n and np.asarray(Image.open(seen[0])).shape == (28, 28)


@pytest.mark.slow
def test_csv_and_the_resize_and_invert_paths_on_scikit_image_pictures(torch_run: Path, tmp_path: Path) -> None:
    from skimage import data

    Image.fromarray(data.text()).save(tmp_path / "text.png")  # dark text on a light page
    Image.fromarray(data.astronaut()).save(tmp_path / "astronaut.jpg")  # RGB
    proc = cli(torch_run, tmp_path / "text.png", tmp_path / "astronaut.jpg", "--format", "csv", "--top-k", "2",
               "--invert", "auto")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert list(rows[0]) == ["file", "label", "class_name", "probability", "top1_label", "top1_class_name",
                             "top1_probability", "top2_label", "top2_class_name", "top2_probability",
                             "preprocessing", "run_id"]
    assert rows[0]["preprocessing"].startswith("inverted (light background")
    assert rows[1]["preprocessing"].startswith("RGB converted to L")
    assert all(r["label"] == r["top1_label"] and 0 < float(r["probability"]) <= 1 for r in rows)


def test_a_run_without_a_model_and_a_bad_top_k_are_one_line_exit_2(torch_run: Path, tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text((torch_run / "config.json").read_text())
    Image.new("L", (28, 28)).save(tmp_path / "x.png")
    for args, phrase in (((tmp_path / "run", tmp_path / "x.png"), "no model.pt"),
                         ((torch_run, tmp_path / "x.png", "--top-k", "0"), "--top-k must be between 1 and 10"),
                         ((torch_run, tmp_path / "x.png", "--format", "xml"), "--format must be one of")):
        proc = cli(*args)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and phrase in proc.stderr, proc.stderr


# Preprocessing alone (no model): the RGB and resize paths, EXIF, alpha.

def test_cifar_targets_get_a_resized_rgb_image_and_the_steps_say_so(tmp_path: Path) -> None:
    from skimage import data

    Image.fromarray(data.camera()).save(tmp_path / "camera.png")
    Image.fromarray(data.astronaut()).save(tmp_path / "astronaut.png")
    cifar = Target(dataset="cifar10", side=32, channels=3)
    camera = load_image(tmp_path / "camera.png", cifar)
    assert camera.pixels.shape == (32, 32, 3)
    assert camera.steps == ("L converted to RGB", "resized 512×512 to 32×32 (aspect ratio not kept)")
    astronaut = load_image(tmp_path / "astronaut.png", Target(dataset="synthetic", side=64, channels=3))
    assert astronaut.pixels.shape == (64, 64, 3) and astronaut.steps == (
        "resized 512×512 to 64×64 (aspect ratio not kept)",)


def test_exif_orientation_and_alpha_are_applied(tmp_path: Path) -> None:
    rgba = np.zeros((10, 20, 4), np.uint8)
    rgba[..., 3] = 0  # fully transparent: flattened onto white
    image = Image.fromarray(rgba, "RGBA")
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    image.save(tmp_path / "rotated.png", exif=exif)
    pixels, steps = decode(tmp_path / "rotated.png", channels=1)
    assert pixels.shape == (20, 10, 1) and (pixels == 255).all()
    assert steps == ["EXIF orientation 6 applied", "alpha flattened onto white", "RGBA converted to L"]


def test_a_light_28x28_digit_is_inverted_and_a_dark_one_goes_in_unchanged() -> None:
    mnist = Target(dataset="mnist", side=28, channels=1)
    dark = np.zeros((28, 28, 1), np.uint8)
    dark[8:20, 12:16] = 255
    assert preprocess(dark, mnist)[0] is dark
    light, steps = preprocess(255 - dark, mnist)
    assert steps[0] == "inverted (light background, border mean 255)" and light[..., 0].max() == 255
    assert light[0, 0, 0] == 0
    _, steps = preprocess(255 - dark, mnist, invert="no")
    assert steps == ["unchanged (already the dataset's shape and polarity)"]
    wide = np.zeros((30, 40, 1), np.uint8)
    wide[5:25, 2:38] = 200  # a garment on black, wider than tall: its longest edge becomes 28, no 20×20 box
    fashion, steps = preprocess(wide, Target(dataset="fashion-mnist", side=28, channels=1))
    assert fashion.shape == (28, 28, 1) and steps[-2:] == [
        "ink box 36×20 fitted into 28×28 as 28×16 (aspect ratio kept)", "centred in 28×28"]
