"""The pages a user opens — report.html (one ROOT and across machines), eda.html and explain.html — rendered by
headless Chromium at 1280 px (tests/browser.py): every image decodes to a non-zero size, nothing is fetched from the
network, no text overflows its table cell, its table's box or its paragraph, heading or navigation bar, and the
screenshot is not blank. A hand-made bad page first proves each check can fail.

The pages come from real runs the session already trains (tests/shared_runs.py: TORCH_SMALL and TORCH_DDP for the
report, TORCH_DIGITS for explain) and from `run_eda` on MNIST with small samples (~9 s).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import browser  # tests/ on sys.path
from shared_runs import TORCH_DDP, TORCH_DIGITS, TORCH_SMALL

if why := browser.missing():
    pytest.skip(f"no headless browser: {why}", allow_module_level=True)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    driver = browser.start()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def report_page(trained: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pvision report` on a ROOT holding copies of two real runs' result.json: 1 and 2 workers, so the speedup
    sections and the curves are drawn."""
    from parallel_vision.report import write_report

    root = tmp_path_factory.mktemp("browser-report")
    for name, config in (("torch-single-r1", TORCH_SMALL), ("torch-ddp-2w-r1", TORCH_DDP)):
        (root / "runs" / name).mkdir(parents=True)
        shutil.copy(trained(**config).out_dir / "result.json", root / "runs" / name / "result.json")
    write_report(root, formats=("html",))
    return root / "report.html"


@pytest.fixture(scope="module")
def machines_page(report_page: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pvision report A B --out DIR`: the runs above beside tests/fixtures/old_root (a laptop, older code)."""
    from parallel_vision.report.machines_page import write_machines_report

    out = tmp_path_factory.mktemp("browser-machines")
    old = shutil.copytree(Path(__file__).parent / "fixtures" / "old_root", out / "old_root")  # reading adds a db
    write_machines_report([report_page.parent, old], out / "page")
    return out / "page" / "report.html"


@pytest.fixture(scope="module")
def eda_page(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from parallel_vision.eda.page import EdaOptions, run_eda

    out = tmp_path_factory.mktemp("browser-eda") / "eda"
    options = EdaOptions(dataset="mnist", out_dir=out, data_dir=data_dir, tsne_sample=500, correlation_sample=500)
    return run_eda(options, progress=False).html_path


@pytest.fixture(scope="module")
def explain_page(trained: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from parallel_vision.explain import run

    folder = tmp_path_factory.mktemp("browser-explain") / "run"
    folder.mkdir()
    for name in ("config.json", "result.json", "model.pt"):  # the shared run's folder is only ever read
        shutil.copy(trained(**TORCH_DIGITS).out_dir / name, folder / name)
    run.explain(folder, ("saliency", "gradcam"), 10, seed=0)
    return folder / "explain" / "explain.html"


def assert_renders_cleanly(shown: browser.Rendered, figures: bool = True) -> None:
    assert shown.images or not figures, "the page shows no image"
    assert not shown.broken_images, f"images that did not decode to a non-zero size: {shown.broken_images}"
    assert not shown.remote, f"the page reaches for the network: {shown.remote}"
    assert not shown.overflows, "text wider than its box at 1280 px: " + "; ".join(shown.overflows)
    colours, inked = browser.ink(shown.screenshot)
    assert colours > 16 and inked > 0.05, f"blank screenshot: {colours} colours, {inked:.1%} not background"


def test_each_check_fails_on_a_page_made_to_fail_it(chromium: Any, tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text(
        "<style>body{background:url(https://example.com/bg.png)}</style>"
        "<img src='https://example.com/a.png'><img src='data:image/png;base64,AAAA'>"
        "<div style='width:300px'><table style='width:300px;table-layout:fixed'><tr><td>"
        + "unbreakable" * 8 + "</td><td>x</td></tr></table></div>"
        "<nav style='width:300px'>" + "".join(f"<a style='white-space:nowrap'>link {i}</a>" for i in range(40))
        + "</nav>")
    shown = browser.render(chromium, page)
    assert len(shown.broken_images) == 2
    assert any("example.com/bg.png" in url for url in shown.remote)  # a CSS url() is seen too
    assert len(shown.overflows) == 2 and "unbreakable" in shown.overflows[0] and "nav" in shown.overflows[1]
    colours, inked = browser.ink(shown.screenshot)
    assert inked < 0.05


def test_the_report_renders_cleanly(chromium: Any, report_page: Path) -> None:
    assert_renders_cleanly(browser.render(chromium, report_page))


def test_the_report_across_machines_renders_cleanly(chromium: Any, machines_page: Path) -> None:
    assert_renders_cleanly(browser.render(chromium, machines_page), figures=False)  # tables only, by design


def test_the_eda_page_renders_cleanly(chromium: Any, eda_page: Path) -> None:
    assert_renders_cleanly(browser.render(chromium, eda_page))


def test_the_explain_page_renders_cleanly(chromium: Any, explain_page: Path) -> None:
    assert_renders_cleanly(browser.render(chromium, explain_page))
