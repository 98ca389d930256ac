"""The link cut at the shipped defaults: no timeout override, both hosts end in bounded time, resume is exact.

tests/test_multinode.py cuts the link with `PVISION_DIST_TIMEOUT_S=10` to keep CI fast. This file plays the
same partition with NOTHING lowered (neither `--collective-timeout` nor the variable: the default 300 s of
docs/reliability.md), so what a user gets out of the box is what is tested. It takes 7-10 minutes on 2
cores, so it is its own tier, marked `at_defaults` and deselected by pyproject's addopts; run it with

    python -m pytest -m at_defaults tests/test_partition_defaults.py

Two network namespaces (tests/netns.py), one static-rendezvous torchrun agent per host (docs/multinode.md's
recommendation), `--deterministic` on the CPU. Once rank 0 has written a checkpoint inside epoch 2 (every 4
steps), host b's link goes down, mid-epoch. Each worker must print one `peer lost` line naming the other rank and
its address, what waited, the checkpoint kept, and exit 75; both hosts must be gone within the bound. Then
the link comes back, both hosts run the same command with `--resume`, and the finished model.pt, epoch
metrics and predictions must equal those of an uninterrupted single-host run bit for bit (2 gloo ranks sum
two numbers whatever the topology, docs/reliability.md).
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from netns import HostPair  # noqa: E402
from parallel_vision.engines.torch.watchdog import DEFAULT_TIMEOUT_S  # noqa: E402
from test_multinode import (  # noqa: E402
    RUN_DEADLINE_S,
    Node,
    _checkpoint_written,
    _env,
    _error_line,
    _host_pair,
    _node_list,
    _pvision,
    _tails,
    _torch_nodes,
    _wait,
    _wait_for,
)

pytestmark = pytest.mark.at_defaults

#: 2048 images in global batches of 128: 16 steps an epoch, a checkpoint every 4 steps besides the epoch ends,
#: so epoch 2 has mid-epoch checkpoints (steps 4, 8, 12): the cut comes right after the first one seen.
RUN = ["--epochs", "3", "--batch-size", "128", "--limit-train", "2048", "--limit-test", "300",
       "--threads", "1", "--device", "cpu", "--seed", "0", "--deterministic", "--checkpoint-every", "4",
       "--quiet", "--no-tensorboard"]
#: After the cut each host (worker and agent) must be gone within this: the default collective timeout, the
#: 2 s heartbeat check, the static agent's ~1.5 s, and slack for 2 shared cores.
EXIT_BOUND_S = DEFAULT_TIMEOUT_S + 35.0
FLOAT_METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


def _mid_epoch_2(out: Path) -> int | None:
    """The step of rank 0's last checkpoint when it lies inside the second epoch (0-based epoch 1) and is fully
    written; else None."""
    try:
        info = json.loads((out / "checkpoint.json").read_text())
    except (OSError, ValueError):
        return None
    inside = info.get("epoch") == 1 and 0 < info.get("step", 0) < info.get("steps_per_epoch", 0)
    return int(info["step"]) if inside and _checkpoint_written(out) else None


def _time_the_cut(hosts: HostPair, nodes: list[Node],
                  meanwhile: Callable[[], object]) -> tuple[list[float], list[float]]:
    """Cut host b's link, start `meanwhile` (the workers are blocked: the cores are free), wait for both hosts to
    end. Returns (seconds to each error line, to each exit)."""
    assert all(n.poll() is None for n in nodes), "a node ended before the cut:\n" + _tails(nodes)
    hosts.b.cut()
    since = time.monotonic()
    meanwhile()
    noticed: dict[int, float] = {}
    while any(n.poll() is None for n in nodes):
        if time.monotonic() > since + EXIT_BOUND_S + 30:
            pytest.fail(f"still running {EXIT_BOUND_S + 30:.0f} s after the link was cut:\n" + _tails(nodes))
        for i, node in enumerate(nodes):
            if i not in noticed and (node.poll() is not None or _error_line(node)):
                noticed[i] = time.monotonic() - since
        time.sleep(0.2)
    gone = [n.ended_at - since for n in nodes if n.ended_at is not None]
    return [noticed[0], noticed[1]], gone


@pytest.mark.timeout(900)
def test_link_cut_at_the_defaults_ends_both_hosts_and_resumes_exactly(data_dir: Path, tmp_path: Path) -> None:
    with _host_pair() as hosts, _node_list() as nodes:
        _cut_then_resume(hosts, nodes, data_dir, tmp_path)


def _cut_then_resume(hosts: HostPair, nodes: list[Node], data_dir: Path, tmp_path: Path) -> None:
    args = [*RUN, "--data-dir", str(data_dir)]
    outs = _torch_nodes(hosts, nodes, tmp_path, args, backend="static")
    cut_run = list(nodes)
    start = time.monotonic()
    _wait_for(lambda: _mid_epoch_2(outs[0]) is not None, cut_run, RUN_DEADLINE_S, "a checkpoint inside epoch 2")
    started_s = time.monotonic() - start
    # The uninterrupted reference, on this host's loopback, started once the cut has blocked both workers.
    argv = _pvision("--framework", "torch", "--strategy", "ddp", "--workers", "2", *args,
                    "--out", str(tmp_path / "straight"))
    lines_s, gone_s = _time_the_cut(hosts, cut_run, lambda: nodes.append(Node("straight", argv, _env(),
                                                                              tmp_path / "straight.log")))
    straight = nodes[-1]
    kept = _mid_epoch_2(outs[0])  # the last checkpoint before the cut (no step may complete after it)
    assert kept is not None, "the last checkpoint is not inside epoch 2"
    print(f"\n[link cut at the defaults] cut {started_s:.1f} s after the start; lines after {lines_s[0]:.1f} / "
          f"{lines_s[1]:.1f} s, hosts gone after {gone_s[0]:.1f} / {gone_s[1]:.1f} s: {_error_line(cut_run[0])} | "
          f"{_error_line(cut_run[1])}")
    for i, node in enumerate(cut_run):
        text, other = node.text(), 1 - i
        errors = [ln for ln in text.splitlines() if ln.startswith("pvision: error:")]
        assert len(errors) == 1, _tails(cut_run)
        line = errors[0]
        assert line.startswith("pvision: error: peer lost:"), line
        assert f"rank {other} (host " in line and hosts.hosts[other].addr in line, line
        waited = re.search(r"waited in the all-reduce of step (\d+) of epoch 2 ", line)
        assert waited and int(waited[1]) > kept, line  # mid-epoch, after the checkpoint it names
        assert f"{DEFAULT_TIMEOUT_S:.0f} s" in line, line  # the default bound, nothing lowered
        assert f"checkpoint.pt (epoch 2 step {kept})" in line, line
        assert "exitcode: 75" in text, _tails(cut_run)
        assert node.proc.returncode not in (None, 0)
        assert DEFAULT_TIMEOUT_S <= lines_s[i] and gone_s[i] < EXIT_BOUND_S, (lines_s, gone_s)
    assert not (outs[0] / "result.json").exists() and not outs[1].exists()

    hosts.b.restore()
    _wait([straight], RUN_DEADLINE_S)
    assert straight.proc.returncode == 0, straight.text()[-3000:]
    assert _torch_nodes(hosts, nodes, tmp_path, [*args, "--resume"], backend="static") == outs  # the same --out
    resumed, start = nodes[-2:], time.monotonic()
    _wait(resumed, RUN_DEADLINE_S)
    print(f"[link cut at the defaults] the resume on both hosts took {time.monotonic() - start:.1f} s")
    assert [n.proc.returncode for n in resumed] == [0, 0], _tails(resumed)
    done = json.loads((outs[0] / "result.json").read_text())
    ref = json.loads((tmp_path / "straight" / "result.json").read_text())
    assert done["status"] == "complete", done["status"]
    assert [(r["epoch"], r["step"]) for r in done["reliability"]["resumed_from"]] == [(1, kept)], done["reliability"]
    assert [[e[k] for k in FLOAT_METRICS] for e in done["epochs"]] == [[e[k] for k in FLOAT_METRICS]
                                                                       for e in ref["epochs"]]
    torch = pytest.importorskip("torch")  # here, not at import: collecting this deselected file stays cheap
    a = torch.load(outs[0] / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []
    assert np.array_equal(np.load(outs[0] / "predictions.npy"), np.load(tmp_path / "straight" / "predictions.npy"))
