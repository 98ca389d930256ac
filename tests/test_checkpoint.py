"""Checkpoint files: atomic writes, RNG states, refusals (unfinished run, other configuration, pickle payload)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from parallel_vision.config import RunConfig  # noqa: E402
from parallel_vision.engines.torch import checkpoint  # noqa: E402
from parallel_vision.errors import ConfigError, EngineError  # noqa: E402
from parallel_vision.launch.outdir import prepare_out_dir  # noqa: E402

SMALL = {"limit_train": 256, "limit_test": 100, "batch_size": 128, "epochs": 2, "device": "cpu",
         "tensorboard": False, "threads_per_worker": 1}


def _state(marker: float) -> dict:
    """A minimal well-formed checkpoint (what `load` checks), told apart by `marker`."""
    return {"format": checkpoint.FORMAT, "kind": checkpoint.KIND, "config_identity": "{}", "code_version": "x",
            "epoch": 0, "step": 1, "steps_per_epoch": 2, "world_size": 1, "model": {"w": torch.full((3,), marker)},
            "optimizer": {}, "scheduler": None, "scaler": None, "records": [], "ranks": [], "elastic_run_id": None}


@pytest.mark.timeout(30)
def test_rng_states_round_trip_through_a_weights_only_file(tmp_path: Path) -> None:
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.normal()  # a cached Gaussian is part of numpy's state
    state = checkpoint.rng_state(cuda=False)
    expected = (torch.rand(4), np.random.rand(4), random.random())
    torch.save(state, tmp_path / "rng.pt")
    loaded = torch.load(tmp_path / "rng.pt", weights_only=True)
    torch.manual_seed(9)
    np.random.seed(9)
    random.seed(9)
    checkpoint.set_rng_state(loaded)
    assert torch.equal(torch.rand(4), expected[0])
    assert np.array_equal(np.random.rand(4), expected[1])
    assert random.random() == expected[2]


@pytest.mark.timeout(30)
def test_a_crash_while_writing_leaves_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoint.save(tmp_path, _state(1.0))
    real_replace = os.replace

    def crash_on_checkpoint(src: str, dst: str) -> None:
        if str(dst).endswith(checkpoint.CHECKPOINT_FILE):
            raise KeyboardInterrupt("killed between the temp file and the rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(tmp_path, _state(2.0))
    monkeypatch.setattr(os, "replace", real_replace)
    assert torch.equal(checkpoint.load(tmp_path / checkpoint.CHECKPOINT_FILE)["model"]["w"], torch.full((3,), 1.0))
    assert not list(tmp_path.glob(".*.tmp")), "the temp file of the failed write is left behind"
    # A temp file left by a SIGKILL mid-write is ignored by `load` and swept at the next start.
    (tmp_path / ".checkpoint.pt.abc.tmp").write_bytes(b"half")
    checkpoint.remove_stale_temp_files(tmp_path)
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.timeout(30)
def test_unreadable_and_foreign_files_are_one_line_errors(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(tmp_path, _state(1.0))
    path.write_bytes(path.read_bytes()[:500])  # truncated
    with pytest.raises(EngineError, match="is not a readable checkpoint") as err:
        checkpoint.load(path)
    assert "\n" not in str(err.value) and "--overwrite" in str(err.value) and "last-good copy" in str(err.value)
    path.write_bytes(random.Random(0).randbytes(20_000))  # overwritten with garbage: damaged, not a payload
    with pytest.raises(EngineError, match="is not a readable checkpoint") as err:
        checkpoint.load(path)
    assert "\n" not in str(err.value) and "unpickle" not in str(err.value)
    assert "--overwrite" in str(err.value) and "last-good copy" in str(err.value)
    torch.save({"w": torch.zeros(2)}, path)  # a model file, not a checkpoint
    with pytest.raises(EngineError, match="is not a parallel_vision checkpoint"):
        checkpoint.load(path)


@pytest.mark.timeout(30)
def test_out_dir_with_an_unfinished_run_needs_resume_or_overwrite(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = RunConfig(**SMALL, out_dir=str(tmp_path))  # type: ignore[arg-type]
    (tmp_path / "config.json").write_text(cfg.to_json())
    checkpoint.save(tmp_path, _state(1.0))
    with pytest.raises(ConfigError, match=r"holds an unfinished run \(checkpoint at epoch 1 step 1\); add --resume"):
        prepare_out_dir(cfg)
    assert prepare_out_dir(cfg.replace(resume=True)) == tmp_path and checkpoint.present(tmp_path)
    with pytest.raises(ConfigError, match=r"holds a different run \(different lr\)"):
        prepare_out_dir(cfg.replace(lr=0.5, resume=True))
    # torchrun restarted this very run: no --resume needed; a checkpoint of another torchrun run still needs it.
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "run-a")
    checkpoint.save(tmp_path, dict(_state(1.0), elastic_run_id="run-a"))
    assert checkpoint.elastic_auto_resume(tmp_path)
    prepare_out_dir(cfg, overwrite=True)
    assert checkpoint.present(tmp_path), "--overwrite on a torchrun restart must keep the run's own checkpoint"
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "run-b")
    with pytest.raises(ConfigError, match="holds an unfinished run"):
        prepare_out_dir(cfg)
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT")
    prepare_out_dir(cfg, overwrite=True)  # start again: the old checkpoint can never be resumed by mistake
    assert not checkpoint.present(tmp_path) and checkpoint.info(tmp_path) is None


@pytest.mark.timeout(60)
def test_checkpoint_of_another_configuration_is_refused(data_dir: Path, tmp_path: Path) -> None:
    from parallel_vision.engines.torch.dist import Dist
    from parallel_vision.engines.torch.loop import Trainer

    cfg = RunConfig(**SMALL, data_dir=str(data_dir), out_dir=str(tmp_path))  # type: ignore[arg-type]
    trainer = Trainer(cfg, Dist())
    trainer.enable_checkpoints(tmp_path, None)
    trainer._save_checkpoint(1, 0, None)
    ckpt = torch.load(tmp_path / checkpoint.CHECKPOINT_FILE, weights_only=True)
    assert json.loads(ckpt["config_identity"]) == cfg.identity() and ckpt["ranks"][0]["rng"]["torch"].dtype
    other = Trainer(cfg.replace(lr=0.5, resume=True), Dist())
    other.enable_checkpoints(tmp_path, None)
    with pytest.raises(ConfigError, match=r"written by a different configuration \(lr 0\.001 -> 0\.5\)"):
        other.restore()
    same = Trainer(cfg.replace(resume=True), Dist())
    same.enable_checkpoints(tmp_path, None)
    assert same.restore() and same.start_epoch == 1


class _Payload:
    """Unpickling this runs `open(marker, "w")`: the marker file proves the code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (open, (self.marker, "w"))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_pickle_payload_is_refused_and_never_runs(data_dir: Path, tmp_path: Path) -> None:
    out, marker = tmp_path / "out", tmp_path / "pwned"
    cfg = RunConfig(**SMALL, data_dir=str(data_dir), out_dir=str(out))  # type: ignore[arg-type]
    out.mkdir()
    (out / "config.json").write_text(cfg.to_json())
    torch.save(dict(_state(1.0), records=[_Payload(marker)]), out / checkpoint.CHECKPOINT_FILE)
    proc = subprocess.run(
        [sys.executable, "-m", "parallel_vision", "train", "--data-dir", str(data_dir), "--out", str(out),
         "--limit-train", "256", "--limit-test", "100", "--batch-size", "128", "--epochs", "2", "--device", "cpu",
         "--no-tensorboard", "--threads", "1", "--quiet", "--resume"],
        capture_output=True, text=True, timeout=100,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "is not a plain-tensor checkpoint" in proc.stderr and "refused" in proc.stderr
    assert not marker.exists(), "the payload ran"
    # The payload is real: an unrestricted load runs it.
    torch.load(out / checkpoint.CHECKPOINT_FILE, weights_only=False)
    assert marker.exists()


@pytest.mark.timeout(30)
def test_spawn_rendezvous_listens_on_loopback_only() -> None:
    from parallel_vision.engines.torch.dist import loopback_store
    from parallel_vision.ports import free_port

    port = free_port()
    store = loopback_store(0, 1, port)
    store.set("k", "v")
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                listening.append(local.rsplit(":", 1)[0])
    assert listening == ["0100007F"], listening  # 127.0.0.1, and nothing on other interfaces
    del store


def test_a_reserved_rendezvous_port_is_nobody_elses_until_the_run_ends() -> None:
    """The spawn rendezvous's port is held from the moment it is chosen: a concurrent process can neither bind it
    nor get it from the kernel, while rank 0's store (SO_REUSEPORT, as engines/torch/dist.loopback_store binds)
    listens and accepts on it."""
    import socket

    from parallel_vision.ports import reserve_port

    reserved = reserve_port()
    port = reserved.getsockname()[1]
    try:
        other = socket.socket()
        with pytest.raises(OSError):
            other.bind(("127.0.0.1", port))
        other.close()
        store = socket.socket()
        store.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        store.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        store.bind(("127.0.0.1", port))
        store.listen(1)
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            conn, _ = store.accept()
            conn.close()
        store.close()
    finally:
        reserved.close()
