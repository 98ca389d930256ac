"""Multi-node training across two "hosts": two network namespaces joined by a veth pair.

Each namespace (tests/netns.py) has its own address on `pv0` (10.201.0.1 and 10.201.0.2),
so the two nodes can reach each other only over that link, as two machines would:

- PyTorch: one `python -m torch.distributed.run` agent per host, c10d rendezvous at
  10.201.0.1:29400 (the link-cut test: the static rendezvous docs/multinode.md recommends), one
  process per node, running the unchanged `python -m parallel_vision train --strategy ddp
  --workers 2` (the CLI process is the worker; it does not spawn).
- TensorFlow: one `python -m parallel_vision train --strategy multiworker --workers 2` per
  host with a user-provided TF_CONFIG naming both hosts.

Each two-host run is compared with the single-host two-worker run of the same
configuration (same result keys and files, same n_test_evaluated, world_size 2, accuracy
within noise). Only global rank 0 / the chief writes: each host gets its own --out, and the
other host's folder must not even exist. Then failures, each bounded in time:

- one host is killed mid-run (every process of it at once; either host): the other must
  stop with a one-line `pvision: error:` naming itself;
- the link is cut (the peer vanishes without resetting anything): both sides must give up and exit;
- a worker dies under `torchrun --max-restarts 1`: both hosts restart and the run finishes
  from rank 0's checkpoint.

Needs root and iproute2 (skipped with the reason otherwise). Every process runs in its own
session under a deadline and is killed with its namespace at the end, pass or fail. The two
cases of each failure test (either victim; either framework's link cut) are played at once, each
on its own pair of namespaces (tests/together.py): their bounds are deadlines, not timings.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from netns import HostPair, kill_group, refused, unavailable_reason  # noqa: E402
from parallel_vision.config import RunConfig  # noqa: E402
from parallel_vision.launch.cluster import is_writer  # noqa: E402
from together import outcome, play_together  # noqa: E402

RDZV_PORT = 29400
TF_PORT = 23456
#: The run both frameworks train: small enough for 2 shared cores, large enough to learn.
SMALL = ["--epochs", "2", "--batch-size", "256", "--limit-train", "1024", "--limit-test", "300",
         "--threads", "1", "--device", "cpu", "--seed", "0", "--quiet"]
#: The kill tests: long enough that the victim dies mid-run (the survivor never finishes).
LONG = ["--epochs", "60", "--batch-size", "256", "--limit-train", "1024", "--limit-test", "300",
        "--threads", "1", "--device", "cpu", "--seed", "0", "--quiet"]
RUN_DEADLINE_S = 150.0
#: After a host dies, the survivor must have exited (with an error) within this many seconds.
SURVIVOR_DEADLINE_S = 90.0
#: Variables of an enclosing launcher that must not leak into the nodes we start.
FOREIGN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR",
               "MASTER_PORT", "TORCHELASTIC_RUN_ID", "TF_CONFIG", "GLOO_SOCKET_IFNAME", "TP_SOCKET_IFNAME",
               "NCCL_SOCKET_IFNAME", "PVISION_LAUNCH_TIME", "PVISION_PROGRESS", "PVISION_DIST_TIMEOUT_S",
               "GROUP_WORLD_SIZE", "TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_MAX_RESTARTS",
               "TORCHELASTIC_USE_AGENT_STORE")

needs_tf = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="TensorFlow is not installed")


# --------------------------------------------------------------------------- plumbing
@contextlib.contextmanager
def _host_pair() -> Iterator[HostPair]:
    """Two fresh namespaces; skipped (with the reason) only where namespaces cannot be made."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"two-host tests need network namespaces: {reason}")
    pair = HostPair()
    try:
        pair.open()
    except Exception as exc:  # noqa: BLE001 - only a refusal skips; anything else fails below
        reason = refused(exc)
        if reason:
            pytest.skip(f"two-host tests need network namespaces: {reason}")
        raise
    try:
        yield pair
    finally:
        pair.close()  # kills every process left in either namespace, then deletes both


@pytest.fixture
def hosts() -> Iterator[HostPair]:
    with _host_pair() as pair:
        yield pair


class Node:
    """One process tree we started (in its own session), its log, and when it ended."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        self._handle = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, env=env, stdout=self._handle, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.ended_at: float | None = None

    def poll(self) -> int | None:
        code = self.proc.poll()
        if code is not None and self.ended_at is None:
            self.ended_at = time.monotonic()
        return code

    def text(self) -> str:
        if not self._handle.closed:
            self._handle.flush()
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        kill_group(self.proc)
        self.poll()
        self._handle.close()


@contextlib.contextmanager
def _node_list() -> Iterator[list[Node]]:
    started: list[Node] = []
    try:
        yield started
    finally:
        for node in started:
            node.stop()


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    with _node_list() as started:
        yield started


#: A scenario on two hosts of its own: (its parameter, hosts, nodes, data_dir, tmp_path).
Scenario = Callable[[str, HostPair, list[Node], Path, Path], None]


def _play_on_two_hosts(scenario: Scenario, params: list[str], data_dir: Path,
                       tmp_path_factory: pytest.TempPathFactory) -> dict[str, BaseException | None]:
    """`scenario` for every parameter at once (tests/together.py), each on its own pair of namespaces (the same
    addresses in other namespaces do not meet) with its own processes, all killed at its end, pass or fail. Only
    for scenarios whose bounds are generous deadlines: most of each is starting Python and a framework."""
    def play(param: str, tmp: Path) -> Callable[[], None]:
        def run() -> None:
            with _host_pair() as pair, _node_list() as started:
                scenario(param, pair, started, data_dir, tmp)
        return run

    return play_together({param: play(param, tmp_path_factory.mktemp(param)) for param in params})


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
    env.update(PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2", **extra)
    return env


def _wait(nodes: list[Node], deadline_s: float) -> None:
    """Wait for every node to exit; past the deadline kill them all and fail with their logs."""
    end = time.monotonic() + deadline_s
    while any(n.poll() is None for n in nodes):
        if time.monotonic() > end:
            for n in nodes:
                n.stop()
            pytest.fail(f"nodes still running after {deadline_s:.0f} s:\n" + _tails(nodes))
        time.sleep(0.2)


def _tails(nodes: list[Node], chars: int = 2500) -> str:
    return "\n".join(f"--- {n.name} (rc {n.proc.returncode}) ---\n{n.text()[-chars:]}" for n in nodes)


def _pvision(*args: str) -> list[str]:
    return [sys.executable, "-m", "parallel_vision", "train", *args]


def _single_host(args: list[str], out: Path, log: Path, nodes: list[Node]) -> Node:
    """The same configuration as one `pvision train` on this host (workers on loopback), started beside the
    two-host run (only results are compared, never times: starting both at once overlaps their start-up);
    `nodes` stops it at the end, pass or fail. Read it with `_single_host_result`."""
    node = Node("single-host", _pvision(*args, "--out", str(out)), _env(), log)
    nodes.append(node)
    return node


def _single_host_result(node: Node, out: Path) -> dict[str, Any]:
    _wait([node], RUN_DEADLINE_S)
    assert node.proc.returncode == 0, node.text()[-3000:]
    return json.loads((out / "result.json").read_text())


def _torchrun(host: Any, rank: int, endpoint: str, run_id: str, args: list[str], out: Path,
              max_restarts: int = 0, backend: str = "c10d") -> list[str]:
    """One node's torchrun agent. c10d: the rendezvous store on host a's agent, ranks from the rendezvous;
    static (docs/multinode.md's recommendation): each node told its rank and the rank-0 host (`endpoint`)."""
    if backend == "static":
        master, port = endpoint.rsplit(":", 1)
        rdzv = ["--rdzv-backend", "static", "--master-addr", master, "--master-port", port, "--rdzv-id", run_id]
    else:
        rdzv = ["--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", run_id,
                "--rdzv-conf", f"is_host={int(rank == 0)},join_timeout=60,read_timeout=20"]
    return host.command([
        sys.executable, "-m", "torch.distributed.run",
        "--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(rank), *rdzv,
        # MASTER_ADDR for the workers is the rank-0 agent's --local-addr (else its FQDN, which
        # in a namespace, or on a multi-homed host, is not the address the others can reach).
        "--local-addr", host.addr,
        "--max-restarts", str(max_restarts), "--monitor-interval", "0.5",
        # No --workers: torchrun is the authority on the world size (2 nodes x 1 process).
        "-m", "parallel_vision", "train", "--framework", "torch", "--strategy", "ddp",
        *args, "--out", str(out),
    ])


def _torch_nodes(hosts: HostPair, nodes: list[Node], tmp: Path, args: list[str], max_restarts: int = 0,
                 backend: str = "c10d", **env: str) -> list[Path]:
    outs = [tmp / "node-a", tmp / "node-b"]
    endpoint = f"{hosts.a.addr}:{RDZV_PORT}"
    for rank, host in enumerate(hosts.hosts):
        argv = _torchrun(host, rank, endpoint, hosts.tag, args, outs[rank], max_restarts, backend)
        nodes.append(Node(f"torch@{host.addr}", argv,
                          _env(GLOO_SOCKET_IFNAME=host.ifname, TP_SOCKET_IFNAME=host.ifname, **env),
                          tmp / f"torch-{rank}.log"))
    return outs


def _tf_nodes(hosts: HostPair, nodes: list[Node], tmp: Path, args: list[str]) -> list[Path]:
    outs = [tmp / "node-a", tmp / "node-b"]
    cluster = {"worker": [f"{h.addr}:{TF_PORT}" for h in hosts.hosts]}
    for index, host in enumerate(hosts.hosts):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        # No --workers: the TF_CONFIG's cluster is the authority on the world size.
        argv = host.command(_pvision("--framework", "tensorflow", "--strategy", "multiworker",
                                     *args, "--out", str(outs[index])))
        nodes.append(Node(f"tf@{host.addr}", argv, _env(TF_CONFIG=tf_config), tmp / f"tf-{index}.log"))
    return outs


#: Top-level result keys only a run under an external launcher has (torch: torchrun's run id, restarts).
LAUNCHER_KEYS = {"elastic"}


def _same_shape(two: dict[str, Any], one: dict[str, Any], n_test: int) -> None:
    assert set(one) <= set(two) and set(two) - set(one) <= LAUNCHER_KEYS, set(two) ^ set(one)
    assert set(two["summary"]) == set(one["summary"])
    assert set(two["timing"]) == set(one["timing"])
    assert [set(e) for e in two["epochs"]] == [set(e) for e in one["epochs"]]
    assert two["artifacts"] == one["artifacts"]
    assert two["status"] == one["status"] == "complete"
    for data in (two, one):
        assert data["summary"]["world_size"] == 2
        assert data["summary"]["n_test_evaluated"] == n_test
        assert [e["n_test_evaluated"] for e in data["epochs"]] == [n_test] * len(data["epochs"])
    assert [e["n_train_images"] for e in two["epochs"]] == [e["n_train_images"] for e in one["epochs"]]


def _compare(label: str, two: dict[str, Any], one: dict[str, Any]) -> float:
    acc2, acc1 = two["summary"]["test_accuracy"], one["summary"]["test_accuracy"]
    t2 = [round(e["epoch_time_s"], 2) for e in two["epochs"]]
    t1 = [round(e["epoch_time_s"], 2) for e in one["epochs"]]
    print(f"\n[{label}] two hosts: acc {acc2:.4f}, epoch times {t2} s, total {two['summary']['total_time_s']:.1f} s"
          f" | one host: acc {acc1:.4f}, epoch times {t1} s, total {one['summary']['total_time_s']:.1f} s")
    return abs(acc2 - acc1)


def _wait_for(predicate: Any, nodes: list[Node], timeout_s: float, what: str) -> None:
    end = time.monotonic() + timeout_s
    while not predicate():
        if any(n.poll() is not None for n in nodes):
            pytest.fail(f"a node exited while waiting for {what}:\n" + _tails(nodes))
        if time.monotonic() > end:
            pytest.fail(f"no {what} after {timeout_s:.0f} s:\n" + _tails(nodes))
        time.sleep(0.2)


def _events(out: Path) -> list[Path]:
    return sorted((out / "tb").glob("events.out.tfevents.*")) if (out / "tb").is_dir() else []


def _kill_host_and_time_survivor(victim: Any, survivor: Node, nodes: list[Node]) -> float:
    """Kill every process of the victim host at once (the machine dies); time the survivor's exit."""
    assert all(n.poll() is None for n in nodes), "a node ended before the kill:\n" + _tails(nodes)
    killed = victim.kill_all()
    assert killed, "nothing was running on the victim host"
    start = time.monotonic()
    end = start + SURVIVOR_DEADLINE_S
    while survivor.poll() is None:
        if time.monotonic() > end:
            pytest.fail(f"the surviving node still runs {SURVIVOR_DEADLINE_S:.0f} s after its peer died "
                        "(it would hang):\n" + _tails([survivor]))
        time.sleep(0.1)
    assert survivor.ended_at is not None
    return survivor.ended_at - start


# --------------------------------------------------------------------------- fast checks
def test_writer_rule_under_tf_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """The launcher's writer is tf_cluster's: the chief, else worker 0 (never worker 0 beside a chief)."""
    for var in ("TORCHELASTIC_RUN_ID", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    cases = [
        ({"worker": ["h:1", "h:2"]}, ("worker", 0), True),
        ({"worker": ["h:1", "h:2"]}, ("worker", 1), False),
        ({"chief": ["h:3"], "worker": ["h:1"]}, ("chief", 0), True),
        ({"chief": ["h:3"], "worker": ["h:1"]}, ("worker", 0), False),
    ]
    for cluster, (kind, index), writer in cases:
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}}))
        tf = RunConfig(framework="tensorflow", strategy="multiworker", workers=sum(map(len, cluster.values())))
        assert is_writer(tf) is writer, (cluster, kind, index)
    monkeypatch.delenv("TF_CONFIG")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    monkeypatch.setenv("RANK", "1")
    assert is_writer(RunConfig(framework="torch", strategy="ddp", workers=2)) is False


# --------------------------------------------------------------------------- PyTorch
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_torchrun_two_hosts_matches_single_host_ddp(
    hosts: HostPair, nodes: list[Node], data_dir: Path, tmp_path: Path
) -> None:
    args = [*SMALL, "--data-dir", str(data_dir)]
    outs = _torch_nodes(hosts, nodes, tmp_path, args)
    two_hosts = list(nodes)
    single = _single_host(["--framework", "torch", "--strategy", "ddp", "--workers", "2", *args],
                          tmp_path / "single", tmp_path / "single.log", nodes)
    _wait(two_hosts, RUN_DEADLINE_S)
    assert [n.proc.returncode for n in two_hosts] == [0, 0], _tails(two_hosts)
    # Global rank 0 (host a: the lower address sorts first in the rendezvous) alone wrote.
    assert not outs[1].exists(), f"rank 1 created {outs[1]}"
    two = json.loads((outs[0] / "result.json").read_text())
    assert sorted(p.name for p in outs[0].iterdir()) == ["config.json", "model.pt", "predictions.npy",
                                                          "result.json", "tb"]
    assert two["environment"]["backend"] == "gloo" and two["environment"]["world_size"] == 2
    assert two["elastic"]["run_id"] == hosts.tag and two["elastic"]["restart_count"] == 0
    assert two["config"]["extra"] == {"nodes": 2, "processes_per_node": 1}
    one = _single_host_result(single, tmp_path / "single")
    _same_shape(two, one, 300)
    assert _compare("torch ddp", two, one) <= 0.05


def _torchrun_survivor(victim: str, hosts: HostPair, nodes: list[Node], data_dir: Path, tmp_path: Path) -> None:
    """The rank-0 host also runs the rendezvous store, so losing it is the harder case."""
    outs = _torch_nodes(hosts, nodes, tmp_path, [*LONG, "--data-dir", str(data_dir)])
    # Rank 0 opens its TensorBoard file after the process group, data and model are up and
    # DDP has broadcast the weights (a collective): training is about to start on both hosts.
    _wait_for(lambda: bool(_events(outs[0])), nodes, RUN_DEADLINE_S, "training start")
    time.sleep(2.0)  # well inside the run (60 epochs)
    dead, alive = (hosts.b, 0) if victim == "rank1-host" else (hosts.a, 1)
    survivor = nodes[alive]
    elapsed = _kill_host_and_time_survivor(dead, survivor, nodes)
    text = survivor.text()
    error = [ln for ln in text.splitlines() if ln.startswith("pvision: error:")]
    print(f"\n[torch kill {victim}] survivor exited rc {survivor.proc.returncode} {elapsed:.1f} s after its peer "
          f"host died: {error[-1] if error else text[-500:]}")
    assert survivor.proc.returncode != 0
    assert error and error[-1].startswith(f"pvision: error: torchrun rank {alive} of 2 failed:"), text[-3000:]
    assert not (outs[0] / "result.json").exists()


TORCH_VICTIMS = ["rank1-host", "rank0-host"]


@pytest.fixture(scope="module")
def torch_survivors(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, BaseException | None]:
    return _play_on_two_hosts(_torchrun_survivor, TORCH_VICTIMS, data_dir, tmp_path_factory)


@pytest.mark.slow
@pytest.mark.timeout(300)  # both victims' scenarios, played at once by the fixture
@pytest.mark.parametrize("victim", TORCH_VICTIMS)
def test_torchrun_survivor_fails_fast_when_a_host_dies(victim: str,
                                                       torch_survivors: dict[str, BaseException | None]) -> None:
    """The rank-0 host also runs the rendezvous store, so losing it is the harder case (`_torchrun_survivor`)."""
    outcome(torch_survivors, victim)


# --------------------------------------------------------------------------- TensorFlow
@pytest.mark.slow
@pytest.mark.tensorflow
@needs_tf
@pytest.mark.timeout(300)
def test_tf_config_two_hosts_matches_single_host_multiworker(
    hosts: HostPair, nodes: list[Node], data_dir: Path, tmp_path: Path
) -> None:
    args = [*SMALL, "--data-dir", str(data_dir)]
    outs = _tf_nodes(hosts, nodes, tmp_path, args)
    two_hosts = list(nodes)
    single = _single_host(["--framework", "tensorflow", "--strategy", "multiworker", "--workers", "2", *args],
                          tmp_path / "single", tmp_path / "single.log", nodes)
    _wait(two_hosts, RUN_DEADLINE_S)
    assert [n.proc.returncode for n in two_hosts] == [0, 0], _tails(two_hosts)
    assert not outs[1].exists(), f"worker 1 created {outs[1]}"
    two = json.loads((outs[0] / "result.json").read_text())
    assert sorted(p.name for p in outs[0].iterdir()) == ["config.json", "model.keras", "predictions.npy",
                                                          "result.json", "tb"]
    assert two["environment"]["cluster"] == {"worker": [f"{h.addr}:{TF_PORT}" for h in hosts.hosts]}
    assert two["environment"]["num_replicas_in_sync"] == 2
    one = _single_host_result(single, tmp_path / "single")
    _same_shape(two, one, 300)
    assert _compare("tf multiworker", two, one) <= 0.05


def _tf_survivor(victim: str, hosts: HostPair, nodes: list[Node], data_dir: Path, tmp_path: Path) -> None:
    """Worker 0 is the chief and also leads TensorFlow's coordination service."""
    outs = _tf_nodes(hosts, nodes, tmp_path, [*LONG, "--data-dir", str(data_dir)])
    # The chief creates its event file before `fit` and flushes scalars at each epoch's end:
    # a file larger than its header means epoch 1 finished on the whole cluster.
    _wait_for(lambda: any(p.stat().st_size > 200 for p in _events(outs[0])), nodes, RUN_DEADLINE_S,
              "end of epoch 1")
    dead, alive = (hosts.b, 0) if victim == "worker1-host" else (hosts.a, 1)
    survivor = nodes[alive]
    elapsed = _kill_host_and_time_survivor(dead, survivor, nodes)
    text = survivor.text()
    error = [ln for ln in text.splitlines() if ln.startswith("pvision: error:")]
    print(f"\n[tf kill {victim}] survivor exited rc {survivor.proc.returncode} {elapsed:.1f} s after its peer host "
          f"died: {error[-1] if error else text[-500:]}")
    assert survivor.proc.returncode != 0
    assert error and error[-1].startswith(f"pvision: error: TF_CONFIG task worker {alive} failed:"), text[-3000:]
    assert not (outs[0] / "result.json").exists()


TF_VICTIMS = ["worker1-host", "chief-host"]


@pytest.fixture(scope="module")
def tf_survivors(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, BaseException | None]:
    return _play_on_two_hosts(_tf_survivor, TF_VICTIMS, data_dir, tmp_path_factory)


@pytest.mark.slow
@pytest.mark.tensorflow
@needs_tf
@pytest.mark.timeout(360)  # both victims' scenarios, played at once by the fixture
@pytest.mark.parametrize("victim", TF_VICTIMS)
def test_tf_survivor_fails_fast_when_a_host_dies(victim: str, tf_survivors: dict[str, BaseException | None]) -> None:
    """Worker 0 is the chief and also leads TensorFlow's coordination service (`_tf_survivor`)."""
    outcome(tf_survivors, victim)


# --------------------------------------------------------------------------- silent loss, recovery
def _checkpoint_written(out: Path) -> bool:
    """OUT/checkpoint.json exists and checkpoint.pt has caught up with it (the summary is written just before)."""
    try:
        return (out / "checkpoint.pt").stat().st_mtime_ns >= (out / "checkpoint.json").stat().st_mtime_ns
    except OSError:
        return False


def _error_line(node: Node) -> str | None:
    lines = [ln for ln in node.text().splitlines() if ln.startswith("pvision: error:")]
    return lines[-1] if lines else None


#: PyTorch's collective timeout in the link-cut test (PVISION_DIST_TIMEOUT_S; the default is 300 s).
CUT_TIMEOUT_S = 10.0
#: After the cut, each torch host (its worker and its static torchrun agent) must have exited within this: the
#: timeout, the 2 s heartbeat check, the agent's ~1.5 s, and slack for 2 shared cores. A c10d agent cut off from
#: its rendezvous store would take ~940 s (docs/multinode.md).
CUT_EXIT_BOUND_S = CUT_TIMEOUT_S + 35.0


def _link_cut(framework: str, hosts: HostPair, nodes: list[Node], data_dir: Path, tmp_path: Path) -> None:
    """A host that vanishes without closing its connections (power loss, partition): nothing is
    reset, so each side must notice on its own. PyTorch: the collective timeout and the lost-peer watchdog,
    lowered here with PVISION_DIST_TIMEOUT_S (default 300 s); TensorFlow: its coordination service's heartbeats.

    Each side must report the loss in one line and exit within the deadline. PyTorch runs under the static
    rendezvous that docs/multinode.md recommends: its agents make no store call while training, so both exit
    with their workers (a c10d agent cut off from the rendezvous store stays blocked until TCP gives up).
    """
    args = [*LONG, "--data-dir", str(data_dir)]
    if framework == "torch":
        outs = _torch_nodes(hosts, nodes, tmp_path, args, backend="static",
                            PVISION_DIST_TIMEOUT_S=f"{CUT_TIMEOUT_S:.0f}")
        # Rank 0's checkpoint after epoch 1, written (its summary comes first): the lines must name it.
        _wait_for(lambda: _checkpoint_written(outs[0]), nodes, RUN_DEADLINE_S, "the checkpoint after epoch 1")
    else:
        outs = _tf_nodes(hosts, nodes, tmp_path, args)
        _wait_for(lambda: any(p.stat().st_size > 200 for p in _events(outs[0])), nodes, RUN_DEADLINE_S,
                  "end of epoch 1")
    assert all(n.poll() is None for n in nodes), _tails(nodes)
    hosts.b.cut()
    since = time.monotonic()
    noticed: dict[int, float] = {}
    while any(n.poll() is None for n in nodes):
        if time.monotonic() > since + SURVIVOR_DEADLINE_S:
            pytest.fail(f"still running {SURVIVOR_DEADLINE_S:.0f} s after the link was cut:\n" + _tails(nodes))
        for i, node in enumerate(nodes):
            if i not in noticed and (node.poll() is not None or _error_line(node)):
                noticed[i] = time.monotonic() - since
        time.sleep(0.1)
    exited = [n.poll() for n in nodes]
    gone = [n.ended_at - since for n in nodes if n.ended_at is not None]
    print(f"\n[{framework} link cut] host a: line after {noticed[0]:.1f} s, exit {exited[0]} after {gone[0]:.1f} s; "
          f"host b: line after {noticed[1]:.1f} s, exit {exited[1]} after {gone[1]:.1f} s: {_error_line(nodes[0])}")
    assert all(code not in (None, 0) for code in exited), _tails(nodes)
    for i, node in enumerate(nodes):
        line = _error_line(node)
        if framework == "tensorflow":
            assert line and line.startswith(f"pvision: error: TF_CONFIG task worker {i} failed:"), _tails(nodes)
            continue
        # PyTorch: the lost-peer line (docs/reliability.md) names the other rank and its address, what waited and
        # the checkpoint kept; the worker exits 75 (torchrun's agent reports its child's code, and exits 1).
        other = 1 - i
        assert line and line.startswith("pvision: error: peer lost:"), _tails(nodes)
        assert f"rank {other} (host " in line and hosts.hosts[other].addr in line, line
        assert "checkpoint.pt (after epoch 1)" in line, line
        assert "exitcode: 75" in node.text(), _tails(nodes)
        assert gone[i] < CUT_EXIT_BOUND_S, (gone, _tails(nodes))
    assert not (outs[0] / "result.json").exists()


@pytest.fixture(scope="module")
def link_cuts(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, BaseException | None]:
    frameworks = ["torch", *(["tensorflow"] if importlib.util.find_spec("tensorflow") else [])]
    return _play_on_two_hosts(_link_cut, frameworks, data_dir, tmp_path_factory)


@pytest.mark.slow
@pytest.mark.timeout(360)  # both frameworks' scenarios, played at once by the fixture
@pytest.mark.parametrize("framework", ["torch", pytest.param("tensorflow", marks=[pytest.mark.tensorflow, needs_tf])])
def test_both_hosts_give_up_when_the_link_is_cut(framework: str, link_cuts: dict[str, BaseException | None]) -> None:
    """A host that vanishes without closing its connections: both sides give up and exit (`_link_cut`)."""
    outcome(link_cuts, framework)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_torchrun_max_restarts_recovers_across_hosts(
    hosts: HostPair, nodes: list[Node], data_dir: Path, tmp_path: Path
) -> None:
    """A worker on host b dies after epoch 2's checkpoint; with --max-restarts 1 both agents restart
    their workers, which resume from rank 0's checkpoint (broadcast to host b) and finish."""
    args = ["--epochs", "5", *SMALL[2:], "--data-dir", str(data_dir)]
    outs = _torch_nodes(hosts, nodes, tmp_path, args, max_restarts=1)
    info = outs[0] / "checkpoint.json"

    def after_epoch_2() -> bool:
        try:
            return json.loads(info.read_text())["epoch"] >= 2
        except (OSError, ValueError, KeyError):
            return False

    _wait_for(after_epoch_2, nodes, RUN_DEADLINE_S, "the checkpoint after epoch 2")
    victims = hosts.b.training_pids()
    assert victims, "no worker process found on host b"
    for pid in victims:
        os.kill(pid, 9)
    _wait(nodes, RUN_DEADLINE_S)
    assert [n.proc.returncode for n in nodes] == [0, 0], _tails(nodes)
    assert not outs[1].exists()
    data = json.loads((outs[0] / "result.json").read_text())
    print(f"\n[torch restart] resumed from {data['reliability']['resumed_from']}, "
          f"acc {data['summary']['test_accuracy']:.4f}, epochs {len(data['epochs'])}")
    assert data["status"] == "complete" and data["summary"]["world_size"] == 2
    assert data["elastic"]["restart_count"] == 1 and data["summary"]["restarts"] == 1
    assert data["reliability"]["resumed_from"][0]["epoch"] >= 2
    assert [e["epoch"] for e in data["epochs"]] == [1, 2, 3, 4, 5]
    assert data["summary"]["n_test_evaluated"] == 300
