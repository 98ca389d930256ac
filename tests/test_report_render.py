"""The report on hand-made results: repeats (medians and ranges), weak scaling, superseded code versions.

The numbers are invented (the engines are exercised in test_bench_e2e.py); what is tested here is the
aggregation and rendering: every number shown follows from the result files by the stated definitions.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from parallel_vision.config import RunConfig
from parallel_vision.report import write_report
from parallel_vision.report.data import build_report_data
from parallel_vision.results.schema import summarise_epochs, write_result


def _result(root: Path, name: str, *, framework: str, strategy: str, workers: int, batch: int, steady: float,
            repeat: int = 1, code: str = "abc", created: str = "2026-01-01T00:00:00+00:00",
            threads: int = 1, init: str = "framework", accuracy: float = 0.9) -> dict[str, Any]:
    cfg = RunConfig(framework=framework, strategy=strategy, workers=workers, epochs=3,  # type: ignore[arg-type]
                    batch_size=batch, limit_train=4096, limit_test=1000,
                    threads_per_worker=threads * (workers if strategy == "mirrored" else 1),
                    extra={"repeat": repeat}, init=init)  # type: ignore[arg-type]
    times = [steady * 1.5, steady, steady]
    epochs = [{"epoch": i + 1, "train_loss": 1.0 / (i + 1), "train_accuracy": 0.8 + 0.05 * i,
               "test_loss": 0.5 / (i + 1), "test_accuracy": accuracy + 0.02 * i, "epoch_time_s": t,
               "images_per_s": 4096 / t, "data_time_s": 0.1 * t, "compute_time_s": 0.9 * t,
               "comm_time_s": (0.2 if strategy == "ddp" else None), "eval_time_s": 0.4,
               "n_train_images": 4096, "n_test_evaluated": 1000} for i, t in enumerate(times)]
    summary = summarise_epochs(epochs, total_time_s=sum(times) + 8.0)
    summary.update({"world_size": workers, "global_batch": batch, "per_worker_batch": batch // workers,
                    "steps_per_epoch": 4096 // batch, "n_train": 4096})
    matrix = [[100 if i == j else 0 for j in range(10)] for i in range(10)]
    report = {str(c): {"precision": 0.99, "recall": 0.98, "f1-score": 0.985, "support": 100} for c in range(10)}
    report.update({"accuracy": 0.94, "macro avg": {"precision": 0.99, "recall": 0.98, "f1-score": 0.985,
                                                   "support": 1000}})
    env_threads = {"torch_threads": threads} if framework == "torch" else {
        "intra_op_threads": threads * (workers if strategy == "mirrored" else 1)}
    data = {"schema_version": 1, "run_id": uuid.uuid4().hex, "status": "complete", "created_at": created,
            "config": cfg.to_dict(), "environment": {"host": "h", "code_version": code, "cpu_model": "CPU",
                                                     **env_threads},
            "epochs": epochs, "summary": summary,
            "timing": {k: None for k in ("startup_s", "data_load_s", "model_build_s", "compile_s",
                                         "eval_total_s", "final_eval_s")},
            "classification_report": report, "confusion_matrix": matrix, "artifacts": {}}
    write_result(data, root / "runs" / name)
    return data


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    for r, jitter in ((1, 1.0), (2, 1.1), (3, 0.9)):
        _result(root, f"torch-single-r{r}", framework="torch", strategy="single", workers=1, batch=256,
                steady=10.0 * jitter, repeat=r)
        _result(root, f"torch-ddp-strong-r{r}", framework="torch", strategy="ddp", workers=2, batch=256,
                steady=6.0 * jitter, repeat=r)
        _result(root, f"torch-ddp-weak-r{r}", framework="torch", strategy="ddp", workers=2, batch=512,
                steady=5.0 * jitter, repeat=r)
    _result(root, "tf-single-r1", framework="tensorflow", strategy="single", workers=1, batch=256, steady=12.0)
    _result(root, "tf-mirrored-r1", framework="tensorflow", strategy="mirrored", workers=2, batch=256,
            steady=8.0)
    # An older measurement of the same TF configuration, from earlier code: superseded, not reported.
    _result(root, "tf-single-r1-old", framework="tensorflow", strategy="single", workers=1, batch=256,
            steady=99.0, code="older", created="2025-01-01T00:00:00+00:00")
    write_report(root, formats=("html", "md"))
    return root


def test_medians_ranges_and_strong_weak_speedups(root: Path) -> None:
    data = build_report_data(root)
    single = next(g for g in data.groups if g.strategy == "single" and g.framework == "torch")
    t = single.stats["mean_epoch_time_excl_warmup_s"]
    assert (t.median, t.lo, t.hi, t.n) == pytest.approx((10.0, 9.0, 11.0, 3))
    (strong_torch,) = [r for r in data.strong if r.point.framework == "torch"]
    assert strong_torch.speedup.median == pytest.approx(10.0 / 6.0)
    assert strong_torch.speedup.lo == pytest.approx(9.0 / (6.0 * 1.1))
    assert strong_torch.speedup.hi == pytest.approx(11.0 / (6.0 * 0.9))
    (weak,) = data.weak
    assert weak.point.global_batch == 512 and weak.baseline.global_batch == 256
    assert weak.speedup.median == pytest.approx((4096 / 5.0) / (4096 / 10.0))
    assert weak.efficiency.median == pytest.approx(1.0)
    (strong_tf,) = [r for r in data.strong if r.point.framework == "tensorflow"]
    assert strong_tf.same_threads and strong_tf.speedup.median == pytest.approx(12.0 / 8.0)


def test_superseded_code_version_is_left_out_and_listed(root: Path) -> None:
    data = build_report_data(root)
    tf_single = next(g for g in data.groups if g.framework == "tensorflow" and g.strategy == "single")
    assert tf_single.repeats == 1 and tf_single.stats["mean_epoch_time_excl_warmup_s"].median == 12.0
    assert [r["name"] for r in data.superseded] == ["tf-single-r1-old"]
    assert any("code versions" in w for w in data.warnings)
    page = (root / "report.html").read_text()
    assert "superseded: older code" in page


def test_rendered_tables_show_ranges_and_both_modes(root: Path) -> None:
    page = (root / "report.html").read_text()
    assert "10.00 [9.00–11.00]" in page  # torch single's steady T: median [min–max] over 3 repeats
    assert "Weak scaling" in page and "Strong scaling" in page
    assert page.count("data:image/png;base64,") == 5
    assert "not measured" in page  # TF mirrored has no communication time
    md = (root / "report.md").read_text()
    assert "### Weak scaling" in md and "10.00 [9.00–11.00]" in md
    summary = json.loads((root / "report.json").read_text())
    assert {s["mode"] for s in summary["scaling"]} == {"strong", "weak"}
    sentences = " ".join(s for part in summary["comparison"].values() for s in part)
    assert "min–max ranges do not overlap" in page  # the tie rule for repeated measurements
    assert "TensorFlow" in sentences and "PyTorch" in sentences



def test_the_report_reads_projection_json_once(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ROOT's files are read into ReportData once; figures, sections and levers take the projection from it."""
    shutil.copytree(root / "runs", tmp_path / "runs")
    reads: list[Path] = []
    real = Path.read_text

    def counting(self: Path, *args: Any, **kwargs: Any) -> str:
        if self.name == "projection.json":
            reads.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counting)
    write_report(tmp_path, formats=("html", "md", "text"))
    assert reads == [tmp_path / "projection.json"]

def test_large_accuracy_gap_under_framework_init_names_the_cause(tmp_path: Path) -> None:
    from parallel_vision.report import compare

    # Framework defaults: PyTorch 85 %, TensorFlow 62 % (the quick preset's pattern) → the note.
    _result(tmp_path, "torch-single-r1", framework="torch", strategy="single", workers=1, batch=256, steady=10.0,
            accuracy=0.81)
    _result(tmp_path, "tf-single-r1", framework="tensorflow", strategy="single", workers=1, batch=256,
            steady=12.0, accuracy=0.58)
    # The same pair under --init aligned, close together: compared only with each other.
    _result(tmp_path, "torch-single-aligned-r1", framework="torch", strategy="single", workers=1, batch=256,
            steady=10.0, accuracy=0.83, init="aligned")
    _result(tmp_path, "tf-single-aligned-r1", framework="tensorflow", strategy="single", workers=1, batch=256,
            steady=12.0, accuracy=0.84, init="aligned")
    write_report(tmp_path, formats=("html", "md"))
    data = build_report_data(tmp_path)
    assert sorted(g.init for g in data.groups) == ["aligned", "aligned", "framework", "framework"]
    (note,) = compare.init_gap_sentences(data)
    assert "23.0 points" in note and "1 comparable pair" in note
    assert "--init aligned" in note and "Framework defaults vs aligned initialisation" in note
    assert "Glorot" in note and "epsilon" in note
    md = (tmp_path / "report.md").read_text()
    assert note in md and note in (tmp_path / "report.html").read_text().replace("&#x27;", "'")
    summary = json.loads((tmp_path / "report.json").read_text())
    assert note in summary["comparison"]["Accuracy"]
    # Which init mode each configuration used: a column (it varies here) and the labels.
    header = next(line for line in md.splitlines() if line.startswith("| Framework | Strategy"))
    assert "| Init |" in header
    assert any("aligned init" in g.label for g in data.groups)


def test_no_init_note_for_small_gaps_or_aligned_runs(tmp_path: Path) -> None:
    from parallel_vision.report import compare, tables

    small, aligned = tmp_path / "small", tmp_path / "aligned"
    _result(small, "torch-single-r1", framework="torch", strategy="single", workers=1, batch=256, steady=10.0,
            accuracy=0.81)
    _result(small, "tf-single-r1", framework="tensorflow", strategy="single", workers=1, batch=256, steady=12.0,
            accuracy=0.78)
    _result(aligned, "torch-single-r1", framework="torch", strategy="single", workers=1, batch=256, steady=10.0,
            accuracy=0.81, init="aligned")
    _result(aligned, "tf-single-r1", framework="tensorflow", strategy="single", workers=1, batch=256,
            steady=12.0, accuracy=0.58, init="aligned")
    small_data, aligned_data = build_report_data(small), build_report_data(aligned)
    assert compare.init_gap_sentences(small_data) == []
    assert compare.init_gap_sentences(aligned_data) == []
    assert "each framework's defaults (--init framework" in tables.run_table_note(small_data)
    assert "aligned (--init aligned" in tables.run_table_note(aligned_data)
    assert "Init" not in tables.run_table(small_data).headers


def test_a_slower_keras_on_jax_points_to_the_measured_cpu_profile(tmp_path: Path) -> None:
    from parallel_vision.report import compare

    slow, close = tmp_path / "slow", tmp_path / "close"
    for root, jax_steady in ((slow, 30.0), (close, 13.0)):
        _result(root, "tf-single-r1", framework="tensorflow", strategy="single", workers=1, batch=256, steady=12.0)
        _result(root, "jax-single-r1", framework="jax", strategy="single", workers=1, batch=256, steady=jax_steady)
    (sentence,) = compare.keras_backend_sentences(build_report_data(slow))
    assert sentence.startswith("Keras on JAX trains the same model 2.5× slower than Keras on TensorFlow")
    assert "docs/jax.md" in sentence and "benchmarks/jax_cpu.py" in sentence
    assert compare.keras_backend_sentences(build_report_data(close)) == []  # within 1.2×: nothing to explain
    on_gpu = json.loads((slow / "runs" / "jax-single-r1" / "result.json").read_text())
    on_gpu["environment"]["gpus"] = ["H100"]
    write_result(on_gpu, slow / "runs" / "jax-single-r1")
    assert compare.keras_backend_sentences(build_report_data(slow)) == []  # the profile is a CPU one
