"""The catalogue agrees with the published checksums, and name/dir lookups behave as documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from parallel_vision.data import DATASETS, get_dataset, resolve_cache_dir, resolve_data_dir
from parallel_vision.errors import DataError


def _sums(path: Path) -> dict[str, str]:
    pairs = (line.split() for line in path.read_text().splitlines())
    return {name.removeprefix("raw/"): digest for digest, name in pairs}


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_catalogue_matches_the_shared_checksum_files(data_dir: Path, name: str) -> None:
    spec = DATASETS[name]
    md5, sha = _sums(data_dir / name / "MD5SUMS"), _sums(data_dir / name / "SHA256SUMS")
    assert {f.name: f.md5 for f in spec.files} == md5
    assert {f.name: f.sha256 for f in spec.files} == sha
    for f in spec.files:
        assert (data_dir / name / "raw" / f.name).stat().st_size == f.size


def test_catalogue_facts() -> None:
    mnist, fashion = DATASETS["mnist"], DATASETS["fashion-mnist"]
    assert mnist.class_names == tuple("0123456789")
    assert fashion.class_names[0] == "T-shirt/top" and fashion.class_names[-1] == "Ankle boot"
    assert (mnist.mean, mnist.std, fashion.mean, fashion.std) == ((0.1307,), (0.3081,), (0.2860,), (0.3530,))
    for spec in (mnist, fashion):
        assert spec.image_shape == (28, 28) and spec.channels == 1 and spec.num_classes == 10
        assert [s.name for s in spec.splits] == ["train", "test"]
        assert len(spec.mirrors) >= 2 and all(m.endswith("/") for m in spec.mirrors)
    assert mnist.split("test").images.name == "t10k-images-idx3-ubyte.gz"


def test_unknown_names_list_the_choices() -> None:
    with pytest.raises(DataError, match="unknown dataset 'cifar'.*mnist.*fashion-mnist"):
        get_dataset("cifar")
    with pytest.raises(DataError, match="unknown split 'val'.*train, test"):
        DATASETS["mnist"].split("val")


def test_data_dir_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("PVISION_DATA_DIR", raising=False)
    assert resolve_data_dir() == tmp_path / "xdg" / "parallel-vision"
    monkeypatch.setenv("PVISION_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"


def test_home_cache_without_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PVISION_DATA_DIR", raising=False)
    monkeypatch.delenv("PVISION_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    for xdg in ("", "relative/ignored"):
        monkeypatch.setenv("XDG_CACHE_HOME", xdg)
        assert resolve_data_dir() == tmp_path / ".cache" / "parallel-vision"
        assert resolve_cache_dir() == tmp_path / ".cache" / "parallel-vision" / "arrays"


def test_cache_dir_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("PVISION_CACHE_DIR", raising=False)
    assert resolve_cache_dir() == tmp_path / "xdg" / "parallel-vision" / "arrays"
    monkeypatch.setenv("PVISION_CACHE_DIR", str(tmp_path / "env"))
    assert resolve_cache_dir() == tmp_path / "env"
    assert resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg"
