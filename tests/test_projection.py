"""Scaling projection (docs/projection.md): the maths on hand-made numbers, the linktest fit on synthetic
measurements, a real loopback linktest, `pvision project` and the report on results of a tiny real bench,
and one linktest over a tbf-shaped link between two network namespaces (skipped with its reason where
namespaces or tc are not available)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from parallel_vision.models.catalog import layer_specs, model_costs
from parallel_vision.projection import calibrate, links, root_inputs, store
from parallel_vision.projection.linktest import make_record, sweep_sizes
from parallel_vision.projection.model import (
    FIRST_BUCKET_BYTES,
    Bucket,
    ComputeFit,
    Link,
    OverlapCalibration,
    Scenario,
    ddp_buckets,
    exposed_after_backward,
    fit_allreduce,
    fit_compute,
    overlap_efficiency,
    project_point,
    reconcile_overlap,
    ring_allreduce_s,
    tree_allreduce_s,
)
from together import pvision_at_once  # tests/ on sys.path

sys.path.insert(0, str(Path(__file__).parent))
from netns import HostPair, kill_group, refused, unavailable_reason  # noqa: E402

LINK = Link("test", 1e9, 10e-6)  # 1 GB/s, 10 µs


# --------------------------------------------------------------------------- maths
def test_ring_allreduce_at_two_and_four_workers() -> None:
    s = 8e6
    assert ring_allreduce_s(s, 1, LINK) == 0.0
    assert ring_allreduce_s(s, 2, LINK) == pytest.approx(1 * s / 1e9 + 2 * 10e-6)  # 2(1)/2 = 1
    assert ring_allreduce_s(s, 4, LINK) == pytest.approx(1.5 * s / 1e9 + 6 * 10e-6)  # 2(3)/4 = 1.5
    assert tree_allreduce_s(s, 4, LINK) == pytest.approx(2 * s / 1e9 + 4 * 10e-6)


def test_overlap_hides_communication_smaller_than_backward() -> None:
    buckets = [Bucket(1, 0.25), Bucket(1, 0.5), Bucket(1, 1.0)]
    assert exposed_after_backward(buckets[:2], [0.1, 0.1], backward_s=1.0) == 0.0  # both done by t=0.6
    # the last bucket is only ready at the end of backward: its cost is exposed whole
    assert exposed_after_backward(buckets, [0.1, 0.1, 0.3], backward_s=1.0) == pytest.approx(0.3)
    # a queue: the first bucket's cost delays the others
    assert exposed_after_backward([Bucket(1, 0.0), Bucket(1, 0.1)], [2.0, 0.5], 1.0) == pytest.approx(1.5)


def test_overlap_efficiency_from_a_measured_step_and_its_comm_hook_time() -> None:
    # T_c 0.3 s, backward 0.2 s; a 3-unit bucket ready at once, a 1-unit one at the end; hook 0.2 s per step:
    # full overlap exposes 0.05 s (0.15 s ends in time, the last 0.05 s after backward), none 0.2 s.
    buckets = [Bucket(3, 0.0), Bucket(1, 1.0)]
    assert overlap_efficiency(buckets, 0.35, 0.3, 0.2) == pytest.approx(1.0)
    assert overlap_efficiency(buckets, 0.50, 0.3, 0.2) == pytest.approx(0.0)
    assert overlap_efficiency(buckets, 0.425, 0.3, 0.2) == pytest.approx(0.5)
    assert overlap_efficiency(buckets, 0.60, 0.3, 0.2) == 0.0 and overlap_efficiency(buckets, 0.2, 0.3, 0.2) == 1.0
    assert overlap_efficiency([Bucket(1, 1.0)], 0.4, 0.3, 0.1) is None  # nothing to hide: the run cannot tell
    # γ from a pair control that the DDP run contradicts is re-solved so that the run is reproduced
    cal = reconcile_overlap(buckets, 0.425, 0.3, 0.2, gamma=1.0)
    assert (cal.how, cal.gamma, cal.phi) == ("phi", 1.0, pytest.approx(0.5))
    cal = reconcile_overlap(buckets, 0.425, 0.3, 0.2, gamma=2.0)  # T_c·γ = 0.6 s > the whole step
    assert cal.how == "gamma_down" and cal.phi == 1.0 and cal.gamma == pytest.approx(1.25)
    cal = reconcile_overlap(buckets, 0.6, 0.3, 0.2, gamma=1.0)  # exposes more than all of its all-reduce
    assert cal.how == "gamma_up" and cal.phi == 0.0 and cal.gamma == pytest.approx(0.4 / 0.3)
    assert reconcile_overlap(buckets, 0.3, 0.3, 0.2, gamma=2.0) == OverlapCalibration(1.0, 1.0, "too_fast")
    # φ interpolates the exposed time between the bucket model (φ = 1) and no overlap (φ = 0)
    fit = ComputeFit(0.0, 0.3 / 64, ((64, 0.3),), "proportional")
    link = Link("x", 2e7, 0.0)
    sc = Scenario(2, 2, link, link)
    full, none, half = (project_point(sc, 64, fit, buckets, overlap=phi) for phi in (1.0, 0.0, 0.5))
    assert none.step_time_s == pytest.approx(none.compute_s + none.comm_s) == pytest.approx(none.step_time_high_s)
    assert half.exposed_comm_s == pytest.approx((full.exposed_comm_s + none.exposed_comm_s) / 2)
    # γ applies to one worker per node only when the nodes share one machine (the emulated validation)
    assert project_point(sc, 64, fit, buckets, contention=1.5).compute_s == pytest.approx(0.3)
    assert project_point(sc, 64, fit, buckets, contention=1.5, shared_machine=True).compute_s == pytest.approx(0.45)


@pytest.mark.parametrize("overlap", [0.0, 0.4, 1.0])
@pytest.mark.parametrize("bandwidth", [1e6, 1e8, 1e10])
@pytest.mark.parametrize("workers,nodes", [(2, 2), (4, 1), (8, 2), (32, 32)])
def test_bounds_ordering_low_point_high(bandwidth: float, workers: int, nodes: int, overlap: float) -> None:
    fit = ComputeFit(0.01, 0.002, ((64, 0.138),), "linear")
    link = Link("x", bandwidth, 20e-6)
    buckets = ddp_buckets(layer_specs("resnet18", 1, 28, 10))
    p = project_point(Scenario(workers, nodes, link, link), 64, fit, buckets, overlap=overlap)
    assert p.step_time_low_s <= p.step_time_s <= p.step_time_high_s
    assert p.step_time_s >= p.compute_s
    assert 0 < p.efficiency <= 1.0 + 1e-12


def test_a_fast_link_gives_ideal_speedup_and_a_slow_one_is_exposed() -> None:
    fit = ComputeFit(0.0, 0.01, ((64, 0.64),), "proportional")
    buckets = ddp_buckets(layer_specs("paper_cnn"))
    fast = project_point(Scenario(8, 8, Link("f", 1e12, 0), Link("f", 1e12, 0)), 64, fit, buckets)
    assert fast.speedup == pytest.approx(8, rel=1e-3) and fast.exposed_comm_s < 1e-3
    slow = project_point(Scenario(8, 8, Link("s", 1e6, 1e-3), Link("s", 1e6, 1e-3)), 64, fit, buckets)
    assert slow.exposed_comm_s > 1.0 and slow.efficiency < 0.5


def test_buckets_cover_the_gradient_in_reverse_order() -> None:
    for model in ("paper_cnn", "resnet18", "wide_mlp"):
        buckets = ddp_buckets(layer_specs(model))
        assert sum(b.bytes for b in buckets) == model_costs(model).gradient_bytes
        assert [b.ready_fraction for b in buckets] == sorted(b.ready_fraction for b in buckets)
        assert buckets[-1].ready_fraction == pytest.approx(1.0)
        assert buckets[0].bytes >= FIRST_BUCKET_BYTES or len(buckets) == 1
    assert len(ddp_buckets(layer_specs("resnet18"))) == 3  # 1 MiB, then ~25 MiB caps of 44.7 MB


def test_compute_fit_catches_the_fixed_cost_of_a_small_batch() -> None:
    fit = fit_compute([(16, 0.05 + 16 * 0.002), (64, 0.05 + 64 * 0.002), (128, 0.05 + 128 * 0.002)])
    assert fit.kind == "linear"
    assert fit.c0 == pytest.approx(0.05) and fit.c1 == pytest.approx(0.002)
    one = fit_compute([(64, 0.64)])
    assert one.kind == "proportional" and one.step_s(32) == pytest.approx(0.32)


def test_allreduce_fit_recovers_latency_and_bandwidth_and_the_ring_link() -> None:
    a, bw = 200e-6, 5e8
    pts = [(s, (a + s / bw) * (1 + 0.02 * (-1) ** i)) for i, s in enumerate(sweep_sizes())]
    fit = fit_allreduce(pts, workers=2)
    assert fit.a_s == pytest.approx(a, rel=0.1) and fit.bandwidth_Bps == pytest.approx(bw, rel=0.05)
    assert fit.method == "two-regime" and min(fit.sizes_for_bandwidth) == FIRST_BUCKET_BYTES
    link = fit.link()
    assert link.bandwidth_Bps == pytest.approx(fit.bandwidth_Bps)  # N = 2: 2(N−1)/N = 1
    assert link.latency_s == pytest.approx(fit.a_s / 2)
    assert ring_allreduce_s(4e6, 2, link) == pytest.approx(fit.seconds(4e6))
    assert sweep_sizes()[0] == 4096 and sweep_sizes()[-1] == 64 * 1024 * 1024


def test_a_token_bucket_burst_at_small_sizes_does_not_inflate_the_bandwidth() -> None:
    """A 10 Mbit/s tbf with a 128 KB burst: messages up to the burst leave at line speed (1 GB/s), the
    rest at the rate. The sustained rate is what a 1 MiB+ DDP bucket sees; the fit must return it.
    (The former fit, every size alike in relative error, returned ~470× the rate on these numbers.)"""
    rate, burst, a = 1.25e6, 128 * 1024, 0.5e-3
    pts = [(s, a + min(s, burst) / 1e9 + max(0, s - burst) / rate) for s in sweep_sizes(max_bytes=4 << 20)]
    fit = fit_allreduce(pts, workers=2)
    assert fit.bandwidth_Bps == pytest.approx(rate, rel=0.01)
    assert fit.a_s == pytest.approx(a, rel=0.05)  # the smallest message: latency (+ 4 KB at line speed)
    assert fit.large_intercept_s < 0  # the burst shows up as a negative intercept of the large-size line
    # one size ≥ 1 MiB only: B from it and a; none: the two largest sizes stand in
    one = fit_allreduce([p for p in pts if p[0] <= 1 << 20], workers=2)
    assert one.bandwidth_Bps == pytest.approx((1 << 20) / (pts[4][1] - one.a_s), rel=1e-6)
    small = fit_allreduce([(4096, 1e-3), (16384, 1.1e-3), (65536, 1.5e-3)], workers=2)
    assert small.bandwidth_Bps == pytest.approx((65536 - 16384) / 0.4e-3) and small.a_s == 1e-3


def test_contention_comes_from_the_pair_control() -> None:
    def run(batch: int, step: float, control: str | None = None) -> dict:
        return {"path": f"r{batch}{control}", "summary": {"per_worker_batch": batch, "steps_per_epoch": 4,
                                                        "mean_epoch_time_excl_warmup_s": 4 * step},
                "config": {"extra": {"control": control} if control else {}}}
    fit = fit_compute([(32, 0.1), (64, 0.2)])
    inputs = root_inputs.Inputs(Path("."), "paper_cnn", "torch", 1.0, (1, 28, 28), 10, [run(32, 0.1), run(64, 0.2)],
                              [], [run(64, 0.26, "pair"), run(64, 0.24, "pair")])
    gamma, note = calibrate.contention(inputs, fit)
    assert gamma == pytest.approx(1.25) and "2 run(s)" in note
    assert calibrate.contention(root_inputs.Inputs(**{**vars(inputs), "pairs": []}), fit)[0] == 1.0


def test_every_link_preset_has_a_source() -> None:
    table = links.presets()
    assert {"nvlink4", "nvlink5", "pcie4", "pcie5", "10gbe", "25gbe", "100gbe", "ib_hdr", "ib_ndr"} <= set(table)
    assert all(p["source"] and p["bandwidth_GBps"] > 0 for p in table.values())
    assert links.preset("25GbE").bandwidth_Bps == pytest.approx(2.94e9)
    assert links.preset("ib-hdr").name == "ib_hdr"
    with pytest.raises(Exception, match="unknown link"):
        links.preset("carrier pigeon")


# --------------------------------------------------------------------------- real runs
def _pvision(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "parallel_vision", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "160"})


@pytest.fixture(scope="module")
def bench_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real bench: 1-worker runs at per-worker batch 32 and 64, 2-worker DDP at 32 each, a linktest.

    The four processes run at once (their times are not checked, only that every part is there): most of
    each is starting Python and torch, so this takes about a third of running them one after another."""
    root = tmp_path_factory.mktemp("proj")
    common = ["-f", "torch", "-e", "2", "--limit-test", "32", "--threads", "1", "--device", "cpu", "--quiet"]
    jobs = [["train", *common, *extra, "--out", str(root / name)] for name, extra in (
        ("single-b32", ["-s", "single", "-b", "32", "--limit-train", "64"]),
        ("single-b64", ["-s", "single", "-b", "64", "--limit-train", "128"]),
        ("ddp-w2", ["-s", "ddp", "--workers", "2", "-b", "64", "--limit-train", "128"]))]
    jobs.append(["linktest", str(root), "--max-bytes", str(1 << 20), "--repeats", "2"])
    pvision_at_once(jobs)
    return root


@pytest.mark.slow
def test_loopback_linktest_writes_a_fitted_record(bench_root: Path) -> None:
    rec = json.loads((bench_root / "linktest.json").read_text())
    assert rec["backend"] == "gloo" and rec["world_size"] == 2 and rec["nodes"] == 1
    assert [p["bytes"] for p in rec["points"]] == sweep_sizes(max_bytes=1 << 20)
    assert rec["fit"]["bandwidth_Bps"] > 1e6 and rec["fit"]["a_s"] >= 0


@pytest.mark.slow
def test_project_cli_on_recorded_results(bench_root: Path) -> None:
    out = _pvision("project", str(bench_root), "--link", "25gbe", "--workers", "2,4,8,16,32", "--nodes", "4")
    assert out.returncode == 0, out.stderr
    assert "Projected" in out.stdout and "what would help" in out.stdout
    doc = json.loads((bench_root / store.PROJECTION_FILE).read_text())
    assert [r["workers"] for r in doc["rows"]] == [2, 4, 8, 16, 32]
    assert [r["nodes"] for r in doc["rows"]] == [2, 4, 4, 4, 4]
    for r in doc["rows"]:
        assert set(r) >= {"workers", "nodes", "step_time_s", "step_time_low_s", "step_time_high_s", "speedup",
                          "efficiency", "exposed_comm_s"}
        assert r["step_time_low_s"] <= r["step_time_s"] <= r["step_time_high_s"]
    assert doc["calibration"]["compute"]["kind"] in ("linear", "proportional")
    assert len(doc["calibration"]["compute"]["points"]) == 2
    # the DDP run was measured on this host: its error over the loopback linktest is reported
    assert [m["workers"] for m in doc["measured"]] == [2]
    assert math.isfinite(doc["measured"][0]["error"])
    # the overlap φ: from that single-host run's comm-hook time where it can tell, else 1 (assumed)
    ov = doc["calibration"]["overlap"]
    assert 0.0 <= ov["phi"] <= 1.0 and [r["run"] for r in ov["runs"]] == ["ddp-w2"]
    assert ov["runs"][0]["hook_comm_per_step_s"] > 0
    assert doc["measured"][0]["overlap_from_this_run"] == (ov["runs"][0]["overlap"] is not None)
    contention = doc["calibration"]["contention"]
    assert contention["runs"] == []  # no pair control in this ROOT: γ starts at 1 …
    # … and stays there unless the single-host DDP run contradicts it (a loaded machine), which the note says
    assert contention["gamma"] == 1.0 or "re-solved to" in contention["note"], contention
    # no --skew-ms: the skew is the DDP run's measured per-rank spread (summary.per_rank), and the output says so
    skew = doc["calibration"]["skew"]
    assert skew["runs"] == ["ddp-w2"] and skew["skew_s"] >= 0 and "measured" in skew["note"]
    assert "rank skew:" in out.stdout and "measured" in out.stdout
    # the report shows it, labelled as projected
    rep = _pvision("report", str(bench_root), "-f", "md")
    assert rep.returncode == 0, rep.stderr
    text = (bench_root / "report.md").read_text()
    assert "## Projected scaling" in text and "PROJECTED, not measured" in text
    assert (bench_root / "figures" / "projection.png").exists()


def test_project_cli_refuses_bad_options(tmp_path: Path) -> None:
    out = _pvision("project", str(tmp_path / "nothing"), "--link", "25gbe")
    assert out.returncode != 0 and "pvision: error:" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    out = _pvision("project", "--list-links", str(tmp_path))
    assert out.returncode == 0 and "25gbe" in out.stdout


def test_make_record_is_what_the_store_indexes(tmp_path: Path) -> None:
    from parallel_vision.projection.linktest import write_record
    from parallel_vision.results.store import open_store

    rec = make_record({4096: [1e-3], 1 << 20: [3e-3]}, backend="gloo", device="cpu", world_size=2, nodes=2,
                      processes_per_node=1, host="h", created_at="2026-01-01T00:00:00+00:00")
    write_record(rec, tmp_path)
    with open_store(tmp_path, create_empty=True) as store:
        [got] = store.linktests()
    assert got["nodes"] == 2 and got["path"] == "linktest.json"


# --------------------------------------------------------------------------- a shaped link
@pytest.mark.slow
def test_linktest_over_a_tbf_shaped_link_between_two_namespaces(tmp_path: Path) -> None:
    """torchrun across two namespace hosts, 100 Mbit/s tbf on both ends: the largest all-reduce must run at
    ~100 Mbit/s, and so must the fitted B (from the slope over the sizes ≥ 1 MiB: the small sizes that ride
    tbf's 256 KB burst do not inflate it, docs/projection.md)."""
    reason = unavailable_reason() or (None if shutil.which("tc") else "the `tc` command is not installed")
    if reason:
        pytest.skip(f"the shaped-link test needs network namespaces and tc: {reason}")
    pair = HostPair(subnet="10.202.0")
    try:
        pair.open()
    except Exception as exc:  # noqa: BLE001 - only a refusal skips
        why = refused(exc)
        if why:
            pytest.skip(f"the shaped-link test needs network namespaces: {why}")
        raise
    procs = []
    try:
        for host in pair.hosts:
            tbf = subprocess.run(["tc", "-n", host.netns, "qdisc", "add", "dev", host.ifname, "root", "tbf", "rate",
                                  "100mbit", "burst", "256k", "latency", "400ms"], capture_output=True, text=True)
            if tbf.returncode:
                pytest.skip(f"tc tbf is not available here: {tbf.stderr.strip()}")
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
        for rank, host in enumerate(pair.hosts):
            argv = host.command([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node",
                                 "1", "--node-rank", str(rank), "--rdzv-backend", "c10d", "--rdzv-endpoint",
                                 f"{pair.a.addr}:29400", "--rdzv-id", pair.tag, "--local-addr", host.addr,
                                 "--rdzv-conf", f"is_host={int(rank == 0)},join_timeout=60",
                                 "-m", "parallel_vision", "linktest", str(tmp_path), "--max-bytes", str(4 << 20),
                                 "--repeats", "2", "--budget-s", "1.0"])
            procs.append(subprocess.Popen(argv, env={**env, "GLOO_SOCKET_IFNAME": host.ifname},
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True))
        outs = [p.communicate(timeout=150)[0].decode(errors="replace") for p in procs]
        assert all(p.returncode == 0 for p in procs), "\n".join(o[-1500:] for o in outs)
        rec = json.loads((tmp_path / "linktest.json").read_text())
        assert rec["nodes"] == 2 and rec["world_size"] == 2
        last = rec["points"][-1]
        gbps = last["bytes"] * 8 / last["seconds"] / 1e9  # N = 2: the ring moves S each way, S/t = B
        assert last["bytes"] >= 1 << 20 and 0.05 < gbps < 0.11, f"{gbps:.3f} Gb/s over a 100 Mbit/s tbf"
        assert 0.05 < rec["link"]["bandwidth_gbps"] < 0.11, rec["fit"]
    finally:
        for p in procs:
            kill_group(p)
        pair.close()
