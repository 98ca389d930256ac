"""`pvision eda` end to end: the page, the JSON, the figures, and its one-line errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("skimage")
pytest.importorskip("scipy")

from parallel_vision.eda import SECTIONS  # noqa: E402
from parallel_vision.eda.page import EdaOptions, heading, run_eda  # noqa: E402
from parallel_vision.errors import ConfigError, DataError  # noqa: E402


@pytest.mark.slow
def test_cli_fashion_mnist_writes_page_json_and_figures(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "eda-fashion"
    env = {**os.environ, "PVISION_DATA_DIR": str(data_dir)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "parallel_vision",
            "eda",
            "--dataset",
            "fashion-mnist",
            "--out",
            str(out),
            "--sample",
            "300",
            "--seed",
            "3",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "eda.html" in proc.stdout

    page = (out / "eda.html").read_text()
    for i, (_, title) in enumerate(SECTIONS):
        assert f"<h2>{heading(i + 1, title)}</h2>" in page.replace("&#x27;", "'")
    assert len(SECTIONS) == 14
    assert "T-shirt/top" in page
    # Self-contained: every image is an inline PNG, nothing is fetched.
    assert not re.search(r'src="(?!data:image/png;base64,)', page)
    assert "<link" not in page and "<script" not in page

    text = (out / "eda.json").read_text()
    doc = json.loads(text)
    assert json.loads(json.dumps(doc)) == doc
    assert doc["dataset"] == "fashion-mnist" and doc["seed"] == 3
    assert list(doc["sections"]) == [k for k, _ in SECTIONS]
    assert doc["samples"]["tsne"] == 300
    assert doc["sections"]["overview"]["numbers"]["train"]["class_counts"] == [6000] * 10
    pca = doc["sections"]["pca"]["numbers"]["components_needed"]
    assert pca["90"] < pca["95"] < pca["99"]
    for key in ("overview", "pca", "tsne", "reconstruction"):
        assert doc["sections"][key]["caption"] in page.replace("&#x27;", "'")

    pngs = sorted(out.glob("*.png"))
    assert len(pngs) >= 14
    assert page.count("data:image/png;base64,") == len(pngs)
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)


def test_cli_unknown_dataset_is_a_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from parallel_vision.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["eda", "--dataset", "cifar", "--out", str(tmp_path / "x"), "--no-progress"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("pvision: error: ") and "cifar" in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_unwritable_out_dir_is_a_config_error(tmp_path: Path, data_dir: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="cannot write the EDA output directory"):
        run_eda(EdaOptions(dataset="mnist", out_dir=blocker / "eda", data_dir=data_dir), progress=False)


def test_bad_options_and_unknown_dataset_raise_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown dataset"):
        run_eda(EdaOptions(dataset="nope", out_dir=tmp_path / "o"), progress=False)
    with pytest.raises(ConfigError, match="t-SNE sample"):
        run_eda(EdaOptions(dataset="mnist", out_dir=tmp_path / "o", tsne_sample=2), progress=False)
    assert not (tmp_path / "o").exists()


def test_eda_command_is_registered() -> None:
    from typer.testing import CliRunner

    from parallel_vision.cli import app

    result = CliRunner().invoke(app, ["eda", "--help"])
    assert result.exit_code == 0
    for option in ("--dataset", "--out", "--sample", "--seed", "--data-dir"):
        assert option in result.output
