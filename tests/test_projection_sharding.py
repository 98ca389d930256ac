"""`pvision project --strategy ddp|zero1|fsdp` (docs/projection.md, *Sharded strategies*): each collective's
cost against hand-computed values, ZeRO-1's partition and broadcasts, FSDP's units and its overlap schedule
worked by hand, and the CLI option."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from parallel_vision.models.catalog import layer_specs, model_costs
from parallel_vision.projection import calibrate, links, records, root_inputs, store
from parallel_vision.projection.collectives import (
    Broadcasts,
    FsdpCosts,
    FsdpLayout,
    Plan,
    Segment,
    Unit,
    allgather_s,
    broadcast_s,
    comm_by_op_s,
    exposure,
    fsdp_exposed_after_compute,
    fsdp_layout,
    project_strategy,
    reduce_scatter_s,
    zero1_broadcasts,
    zero1_partition,
)
from parallel_vision.projection.linktest import make_record
from parallel_vision.projection.model import (
    ComputeFit,
    Link,
    Scenario,
    ddp_buckets,
    project_point,
    reconcile,
    ring_allreduce_s,
)
from together import pvision_at_once  # tests/ on sys.path

LINK = Link("test", 1e9, 10e-6)  # 1 GB/s each way, 10 µs a hop
S = 8e6


# --------------------------------------------------------------------------- one collective
def test_allgather_and_reduce_scatter_cost_half_a_ring_all_reduce() -> None:
    assert allgather_s(S, 1, LINK) == 0.0 and reduce_scatter_s(S, 1, LINK, "gloo") == 0.0
    # N = 4: (N−1)/N·S/B + (N−1)α = 0.75·8 ms + 3·10 µs
    assert allgather_s(S, 4, LINK) == pytest.approx(6.03e-3)
    assert reduce_scatter_s(S, 4, LINK, "nccl") == pytest.approx(6.03e-3)
    # N = 2: 0.5·8 ms + 10 µs
    assert allgather_s(S, 2, LINK) == pytest.approx(4.01e-3)


def test_gloo_reduce_scatter_costs_an_all_reduce() -> None:
    """ProcessGroupGloo reduce-scatters by all-reducing the whole input (pytorch/pytorch#118911)."""
    assert reduce_scatter_s(S, 4, LINK, "gloo") == pytest.approx(1.5 * 8e-3 + 6 * 10e-6)  # 12.06 ms
    assert reduce_scatter_s(S, 4, LINK, "gloo") == pytest.approx(ring_allreduce_s(S, 4, LINK))
    assert reduce_scatter_s(S, 2, LINK, "gloo") == pytest.approx(2 * allgather_s(S, 2, LINK))


def test_broadcast_cannot_beat_s_over_b_and_gloo_sends_it_down_a_tree() -> None:
    # NCCL's pipelined chain: S/B + (N−1)α; gloo's binomial tree: ⌈log2 N⌉·(S/B + α)
    assert broadcast_s(S, 4, LINK, "nccl") == pytest.approx(8e-3 + 3 * 10e-6)
    assert broadcast_s(S, 4, LINK, "gloo") == pytest.approx(2 * (8e-3 + 10e-6))
    assert broadcast_s(S, 5, LINK, "gloo") == pytest.approx(3 * (8e-3 + 10e-6))
    assert broadcast_s(S, 2, LINK, "gloo") == broadcast_s(S, 2, LINK, "nccl") == pytest.approx(8.01e-3)
    assert broadcast_s(S, 1, LINK, "gloo") == 0.0


# --------------------------------------------------------------------------- ZeRO-1
def test_zero1_partition_is_sorted_greedy_and_uneven_when_one_tensor_dominates() -> None:
    assert zero1_partition([3, 10, 1, 7, 5], 2) == [[10, 3], [7, 5, 1]]  # 13 and 13
    assert zero1_partition([4, 4], 2) == [[4], [4]]  # a tie goes to the lower rank
    b = zero1_broadcasts(layer_specs("wide_mlp"), 2)
    # fc2's 4096×4096 weights (67.1 MB) on rank 0, everything else (13.1 MB) on rank 1
    assert b.bytes_per_root == (4096 * 4096 * 4, pytest.approx(model_costs("wide_mlp").gradient_bytes - 4096 ** 2 * 4))
    assert b.tensors == 10
    scaled = zero1_broadcasts(layer_specs("wide_mlp"), 2, total_bytes=1e6)
    assert sum(scaled.bytes_per_root) == pytest.approx(1e6) and scaled.bytes_per_root[0] / 1e6 > 0.8


def test_zero1_broadcasts_one_after_another_and_all_at_once_as_the_bounds() -> None:
    b = Broadcasts((6e6, 2e6), tensors=5)
    # N = 2: each byte crosses the link once, one tensor at a time: 8 MB / 1 GB/s + 5 tensors × α
    assert b.cost_s(2, LINK, "gloo") == pytest.approx(8e-3 + 5 * 10e-6)
    assert b.cost_s(2, LINK, "nccl") == pytest.approx(8e-3 + 5 * 10e-6)
    # all at once: rank 1 receives 6 MB while rank 0 receives 2 MB
    assert b.low_s(2, LINK) == pytest.approx(6e-3 + 10e-6)
    b4 = Broadcasts((2e6, 2e6, 2e6, 2e6), tensors=4)
    assert b4.cost_s(4, LINK, "nccl") == pytest.approx(8e-3 + 4 * 3 * 10e-6)
    assert b4.cost_s(4, LINK, "gloo") == pytest.approx(2 * 8e-3 + 4 * 2 * 10e-6)
    assert b4.low_s(4, LINK) == pytest.approx(6e-3 + 10e-6)  # the lead's (N−1)/N·S/B: equal shards at once
    assert b4.high_s(4, LINK) == pytest.approx(b4.cost_s(4, LINK, "gloo"))


def test_zero1_is_ddp_plus_its_exposed_broadcasts() -> None:
    fit = ComputeFit(0.0, 0.3 / 64, ((64, 0.3),), "proportional")
    specs = layer_specs("wide_mlp")
    buckets = tuple(ddp_buckets(specs))
    sc = Scenario(2, 2, LINK, LINK)
    ddp = project_point(sc, 64, fit, buckets, overlap=0.5)
    bc = zero1_broadcasts(specs, 2)
    z = project_strategy(Plan("zero1", buckets=buckets, broadcasts=bc), sc, 64, fit, backend="gloo", overlap=0.5)
    extra = sum(bc.bytes_per_root) / 1e9 + 10 * 10e-6
    assert z.step_time_s == pytest.approx(ddp.step_time_s + extra)
    assert z.step_time_low_s == pytest.approx(ddp.step_time_low_s + 67108864 / 1e9 + 10e-6)
    assert z.step_time_low_s <= z.step_time_s <= z.step_time_high_s
    assert z.extra["comm_by_op_s"]["broadcast"] == pytest.approx(extra)
    same = project_strategy(Plan("ddp", buckets=buckets), sc, 64, fit, overlap=0.5)
    assert same.step_time_s == ddp.step_time_s and same.extra["comm_by_op_s"]["broadcast"] == 0.0


# --------------------------------------------------------------------------- FSDP
def test_fsdp_units_are_the_blocks_then_the_root() -> None:
    res = fsdp_layout(layer_specs("resnet18"), "resnet18")
    assert [u.name for u in res.units] == ["<root>", "layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0",
                                           "layer3.1", "layer4.0", "layer4.1"]
    assert res.parameter_bytes == model_costs("resnet18").gradient_bytes
    assert res.units[0].root and not any(u.root for u in res.units[1:])
    assert sum(s.flops_share for s in res.segments) == pytest.approx(1.0)
    assert res.segments[0].unit == 0 and res.segments[-1].unit == 0  # the stem and the classifier
    mlp = fsdp_layout(layer_specs("wide_mlp"), "wide_mlp")
    assert [u.name for u in mlp.units] == ["<root>", "fc1", "fc2", "fc3"]
    assert mlp.units[0].bytes == 4 * 4 * 4096  # two BatchNorms' weight and bias


# two units A and B, half the forward FLOPs each; T_c = 3 s: forward 1 s, backward 2 s
TWO = FsdpLayout((Unit("A", 1.0), Unit("B", 1.0)), (Segment(0, 0.5), Segment(1, 0.5)))


def test_fsdp_overlap_schedule_worked_by_hand() -> None:
    costs = FsdpCosts(all_gather=(0.2, 0.2), reduce_scatter=(0.3, 0.3), regather=(True, True))
    # forward: AG(A) 0–0.2, A 0.2–0.7 (AG(B) 0.2–0.4 behind it), B 0.7–1.2;
    # backward: AG(B) 1.2–1.4, B 1.4–2.4 (AG(A) 1.4–1.6), RS(B) 2.4–2.7, A 2.4–3.4, RS(A) 3.4–3.7.
    # Exposed: 3.7 − 3 = the first all-gather of each pass and the last reduce-scatter.
    assert fsdp_exposed_after_compute(TWO, costs, 3.0) == pytest.approx(0.2 + 0.2 + 0.3)
    assert costs.total() == pytest.approx(4 * 0.2 + 2 * 0.3)
    kept = FsdpCosts((0.2, 0.2), (0.3, 0.3), (False, False))  # not resharded: no all-gather in backward
    assert fsdp_exposed_after_compute(TWO, kept, 3.0) == pytest.approx(0.2 + 0.3)
    assert kept.total() == pytest.approx(2 * 0.2 + 2 * 0.3)
    slow = FsdpCosts((1.0, 1.0), (1.0, 1.0), (True, True))  # the link, not compute, sets the pace
    # forward: AG(A) 0–1, A 1–1.5, AG(B) 1–2, B 2–2.5; backward: AG(B) 2.5–3.5, B 3.5–4.5 (AG(A) 3.5–4.5),
    # RS(B) 4.5–5.5, A 4.5–5.5, RS(A) 5.5–6.5: 6.5 − 3 exposed
    assert fsdp_exposed_after_compute(TWO, slow, 3.0) == pytest.approx(3.5)


def test_fsdp_step_point_and_bounds_over_gloo_and_nccl() -> None:
    fit = ComputeFit(0.0, 3.0 / 64, ((64, 3.0),), "proportional")
    link = Link("x", 1e6, 0.0)  # 1 MB/s, no latency: costs are bytes ÷ 1e6
    layout = FsdpLayout((Unit("A", 0.8e6), Unit("B", 0.8e6)), (Segment(0, 0.5), Segment(1, 0.5)))
    sc = Scenario(2, 2, link, link)
    plan = Plan("fsdp", fsdp=layout, reshard=True)
    # N = 2: AG = 0.4 s a unit; RS 0.4 s on NCCL, 0.8 s (an all-reduce) on gloo
    assert comm_by_op_s(plan, 2, link, "nccl") == pytest.approx(
        {"all_reduce": 0.0, "all_gather": 1.6, "reduce_scatter": 0.8, "broadcast": 0.0})
    assert comm_by_op_s(plan, 2, link, "gloo")["reduce_scatter"] == pytest.approx(1.6)
    none = project_strategy(plan, sc, 64, fit, backend="gloo", overlap=0.0)
    assert none.step_time_s == pytest.approx(3.0 + 1.6 + 1.6) == pytest.approx(none.step_time_high_s)
    full = project_strategy(plan, sc, 64, fit, backend="nccl", overlap=1.0)
    # the hand schedule with AG 0.4, RS 0.4: 0.4 (forward) + 0.4 (backward) + 0.4 (last RS) exposed
    assert full.exposed_comm_s == pytest.approx(1.2) and full.comm_s == pytest.approx(2.4)
    assert full.step_time_low_s <= full.step_time_s <= full.step_time_high_s
    half = project_strategy(plan, sc, 64, fit, backend="nccl", overlap=0.5)
    assert half.exposed_comm_s == pytest.approx((1.2 + 2.4) / 2)
    kept = project_strategy(Plan("fsdp", fsdp=layout, reshard=False), sc, 64, fit, backend="nccl", overlap=0.0)
    assert kept.comm_s == pytest.approx(0.8 + 0.8)
    # measured bytes rescale each kind: twice the all-gather bytes, twice its seconds
    big = Plan("fsdp", fsdp=layout, reshard=True, all_gather_scale=2.0)
    assert comm_by_op_s(big, 2, link, "nccl")["all_gather"] == pytest.approx(3.2)
    assert big.modelled_bytes()["all_gather"] == pytest.approx(4 * 0.8e6 * 2)


def test_fsdp_overlap_calibration_reproduces_the_run_it_came_from() -> None:
    """A loopback fsdp step of 3 s compute and 1.4 s comm (AG 0.2 ×4, RS 0.3 ×2 in shares) that took 4.05 s
    exposes 1.05 s: halfway between full overlap (0.7 s) and none (1.4 s)."""
    plan = Plan("fsdp", fsdp=TWO, reshard=True)
    link = Link("x", 1.0, 0.0)  # any link: only the shares matter, AG : RS = 1 : 1 here
    e_ov = exposure(plan, 1.4, 2, link, "nccl")
    # shares from this link: AG 0.5 s, RS 0.5 s per unit → scaled to 1.4 s: 0.2333 each
    assert e_ov(3.0) == pytest.approx(3 * 1.4 / 6)
    cal = reconcile(3.0 + 0.35 + 0.5 * 0.7 + 0.5 * 1.4 - 0.35, 3.0, 1.4, 1.0, e_ov)
    assert cal.how == "phi" and cal.gamma == 1.0
    assert cal.phi == pytest.approx((1.4 - 1.05) / (1.4 - 0.7))
    # ZeRO-1: the broadcasts' seconds are exposed outside the comm hook's all-reduce time
    z = Plan("zero1", buckets=tuple(ddp_buckets(layer_specs("resnet18"))), broadcasts=Broadcasts((1.0, 1.0), 2))
    e = exposure(z, 0.2, 2, link, "gloo")
    step = 0.3 + 0.1 + 0.5 * e(0.3) + 0.5 * 0.2  # φ = 0.5 once the 0.1 s of broadcasts are taken out
    with_bc = reconcile(step, 0.3, 0.2, 1.0, e, fixed_s=0.1)
    assert with_bc.how == "phi" and with_bc.phi == pytest.approx(0.5)
    assert reconcile(step, 0.3, 0.2, 1.0, e).phi == pytest.approx(0.0)  # without them φ would read 0


# --------------------------------------------------------------------------- the command line
def _pvision(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "parallel_vision", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "160"})


def test_project_refuses_an_unknown_strategy_in_one_line(tmp_path: Path) -> None:
    out = _pvision("project", str(tmp_path), "--link", "25gbe", "--strategy", "zero3")
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "pvision: error:" in lines[0] and "zero3" in lines[0]
    assert "ddp, zero1, fsdp" in lines[0]
    out = _pvision("project", str(tmp_path), "--link", "25gbe", "--backend", "mpi")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "mpi" in out.stderr


# --------------------------------------------------------------------------- calibrate: a ROOT's runs
def _run(path: str, batch: int, step: float, *, strategy: str = "single", workers: int = 1, nodes: int = 1,
         comm_bytes: dict[str, float] | None = None, hook: float | None = None) -> dict[str, Any]:
    summary: dict[str, Any] = {"per_worker_batch": batch, "steps_per_epoch": 4,
                               "mean_epoch_time_excl_warmup_s": 4 * step}
    if comm_bytes is not None:
        summary["comm_bytes_by_op"] = comm_bytes
    extra = {"nodes": nodes} if nodes > 1 else {}
    return {"path": path, "workers": workers, "strategy": strategy, "summary": summary,
            "config": {"extra": extra}, "hook_comm_per_step_s": hook}


def _linktest(nodes: int, bandwidth: float, a: float = 2e-4) -> dict[str, Any]:
    sizes = [4096, 65536, 1 << 20, 4 << 20, 16 << 20]
    return make_record({s: [a + s / bandwidth] for s in sizes}, backend="gloo", device="cpu", world_size=2,
                       nodes=nodes, processes_per_node=1, host="h", created_at=f"2026-12-0{nodes}T00:00:00+00:00")


def test_default_strategy_is_that_of_the_multi_worker_runs_else_ddp() -> None:
    assert records.default_strategy([_run("s", 64, 0.2), _run("f", 64, 1, strategy="fsdp", workers=2)]) == "fsdp"
    assert records.default_strategy([_run("s", 64, 0.2)]) == "ddp"
    both = [_run("f", 64, 1, strategy="fsdp", workers=2), _run("z", 64, 1, strategy="zero1", workers=2)]
    assert records.default_strategy(both) == "ddp"


def test_fsdp_projection_from_a_root_takes_phi_from_its_loopback_run_and_bytes_from_the_runs() -> None:
    params = model_costs("wide_mlp").gradient_bytes
    measured = {"all_reduce": 0.0, "all_gather": 2 * params, "reduce_scatter": params, "broadcast": 0.0}
    singles = [_run("s32", 32, 0.1), _run("s64", 64, 0.2)]
    loop = _run("loop", 64, 0.5, strategy="fsdp", workers=2, comm_bytes=measured)  # no comm time: modelled
    far = _run("far", 64, 3.0, strategy="fsdp", workers=2, nodes=2, comm_bytes=measured)
    inputs = root_inputs.Inputs(Path("."), "wide_mlp", "torch", 1.0, (1, 28, 28), 10, singles, [loop, far], [],
                              linktests=[_linktest(2, 1e8), _linktest(1, 1e9)], strategy="fsdp", backend="gloo")
    doc = calibrate.project(inputs, [2, 4], links.preset("25gbe"))
    assert doc["strategy"] == "fsdp" and doc["backend"] == "gloo"
    col = doc["calibration"]["collectives"]
    assert col["strategy"] == "fsdp" and [u["name"] for u in col["fsdp_units"]] == ["<root>", "fc1", "fc2", "fc3"]
    # every unit, the root too, gathered twice (the engine passes reshard_after_forward to the root as well)
    scales = doc["calibration"]["comm_bytes"]["used_scales"]
    assert scales == {"all_gather": pytest.approx(1.0), "reduce_scatter": pytest.approx(1.0)}
    assert col["reshard_root"] is True
    [cal] = doc["calibration"]["overlap"]["runs"]
    assert cal["run"] == "loop" and cal["comm_source"] == "modelled over the single-host linktest"
    # on the CPU FSDP2's collectives block: φ = 0, and the loopback run gives γ alone (step = T_c·γ + H)
    assert doc["calibration"]["overlap"]["phi"] == 0.0 and "block" in doc["calibration"]["overlap"]["note"]
    assert cal["how"] == "blocking" and cal["gamma"] == pytest.approx((0.5 - cal["hook_comm_per_step_s"]) / 0.2)
    on_gpu = calibrate.project(root_inputs.Inputs(**{**vars(inputs), "device": "cuda"}), [2], links.preset("25gbe"))
    assert on_gpu["calibration"]["overlap"]["runs"][0]["how"] != "blocking"  # φ from the run there
    # H: the collectives over the 1 GB/s loopback link (N = 2, α = 0.1 ms): all-gathers of 2 × 80 MB at
    # (N−1)/N, the reduce-scatter on gloo an all-reduce of 80 MB at 2(N−1)/N; 4 units, 2 gathers and 1 RS each
    assert cal["hook_comm_per_step_s"] == pytest.approx(params / 1e9 + params / 1e9 + 16 * 1e-4, rel=1e-3)
    near, m = sorted(doc["measured"], key=lambda x: x["nodes"])
    assert near["run"] == "loop" and near["overlap_from_this_run"]  # φ came from it: no independent check
    assert near["error"] == pytest.approx(0.0, abs=1e-9)  # the calibration reproduces the run it came from
    assert m["run"] == "far" and not m["overlap_from_this_run"] and m["strategy"] == "fsdp" and m["nodes"] == 2
    by_op = m["comm_by_op_s"]
    assert by_op["all_gather"] == pytest.approx(params / 1e8, rel=0.01)  # over the 2-node link
    assert by_op["reduce_scatter"] == pytest.approx(params / 1e8, rel=0.01) and by_op["all_reduce"] == 0.0
    assert m["step_time_low_s"] <= m["projected_step_s"] <= m["step_time_high_s"]
    for r in doc["rows"]:
        assert r["comm_by_op_s"]["all_gather"] > 0 and r["step_time_low_s"] <= r["step_time_s"] <= r["step_time_high_s"]
    assert "compression_4x" not in doc["alternatives"]  # DDP's comm hooks do not apply to FSDP


def test_zero1_projection_adds_the_broadcasts_to_ddp() -> None:
    singles = [_run("s32", 32, 0.1), _run("s64", 64, 0.2)]
    z = _run("z", 64, 0.4, strategy="zero1", workers=2, hook=0.05)
    base = root_inputs.Inputs(Path("."), "resnet18", "torch", 1.0, (1, 28, 28), 10, singles, [z], [],
                            linktests=[_linktest(1, 1e9)], strategy="zero1", backend="gloo")
    doc = calibrate.project(base, [2], links.preset("10gbe"), overlap_phi=1.0)
    row = doc["rows"][0]
    assert row["comm_by_op_s"]["broadcast"] > 0 and row["comm_by_op_s"]["all_reduce"] > 0
    ddp = calibrate.project(root_inputs.Inputs(**{**vars(base), "strategy": "ddp"}), [2], links.preset("10gbe"),
                            overlap_phi=1.0)["rows"][0]
    assert row["step_time_s"] == pytest.approx(ddp["step_time_s"] + row["comm_by_op_s"]["broadcast"])
    [cal] = doc["calibration"]["overlap"]["runs"]
    assert cal["comm_source"] == "comm hook" and cal["exposed_outside_hook_s"] > 0  # the broadcasts, modelled


def test_zero1_broadcasts_take_a_runs_measured_split_when_it_has_as_many_ranks() -> None:
    specs = layer_specs("wide_mlp")
    assert zero1_broadcasts(specs, 2, shares=[3e6, 1e6]).bytes_per_root == (3e6, 1e6)
    assert zero1_broadcasts(specs, 2, total_bytes=8e6, shares=[3e6, 1e6]).bytes_per_root == (6e6, 2e6)
    assert zero1_broadcasts(specs, 4, shares=[3e6, 1e6]) == zero1_broadcasts(specs, 4)  # another N: the model's


def test_fsdp_units_are_the_engines() -> None:
    """collectives.FSDP_BLOCKS picks, from the layer list, the units models.torch_zoo.shard_units wraps."""
    torch = pytest.importorskip("torch")
    from parallel_vision.models.torch_zoo import build_torch_model, shard_units

    for model in ("paper_cnn", "resnet18", "wide_mlp"):
        torch.manual_seed(0)
        net = build_torch_model(model, 1, 28, 10)
        engine = sorted(4 * sum(p.numel() for p in u.parameters()) for u in shard_units(net))
        ours = sorted(u.bytes for u in fsdp_layout(layer_specs(model), model).units if not u.root)
        assert ours == engine, model


# --------------------------------------------------------------------------- a real fsdp run
@pytest.mark.slow
def test_project_an_fsdp_root_of_real_runs(tmp_path: Path) -> None:
    """1-worker runs at two batches, a 2-worker fsdp run and a loopback linktest (run together, as
    test_projection's bench_root): `pvision project` picks fsdp, takes the bytes the run counted, φ from it
    over the linktest, and reports its error."""
    common = ["-f", "torch", "-e", "2", "--limit-test", "32", "--threads", "1", "--device", "cpu", "--quiet",
              "-m", "paper_cnn"]
    jobs = [["train", *common, *extra, "--out", str(tmp_path / name)] for name, extra in (
        ("single-b32", ["-s", "single", "-b", "32", "--limit-train", "64"]),
        ("single-b64", ["-s", "single", "-b", "64", "--limit-train", "128"]),
        ("fsdp-w2", ["-s", "fsdp", "--workers", "2", "-b", "64", "--limit-train", "128"]))]
    jobs.append(["linktest", str(tmp_path), "--max-bytes", str(4 << 20), "--repeats", "2"])
    pvision_at_once(jobs)
    out = _pvision("project", str(tmp_path), "--link", "25gbe", "--workers", "2,8")
    assert out.returncode == 0, out.stderr
    assert "fsdp (resharded after forward), gloo" in " ".join(out.stdout.split())
    assert "all-gather" in out.stdout and "reduce-scatter" in out.stdout
    doc = json.loads((tmp_path / store.PROJECTION_FILE).read_text())
    assert doc["strategy"] == "fsdp" and doc["backend"] == "gloo"
    params = model_costs("paper_cnn").gradient_bytes
    assert doc["calibration"]["comm_bytes"]["measured_by_op"] == {
        "all_reduce": 0.0, "all_gather": 2 * params, "reduce_scatter": params, "broadcast": 0.0}
    assert doc["calibration"]["comm_bytes"]["used_scales"] == {"all_gather": 1.0, "reduce_scatter": 1.0}
    [cal] = doc["calibration"]["overlap"]["runs"]
    assert cal["run"] == "fsdp-w2" and cal["comm_source"] == "modelled over the single-host linktest"
    [m] = doc["measured"]
    assert m["strategy"] == "fsdp" and math.isfinite(m["error"]) and m["comm_by_op_s"]["reduce_scatter"] > 0
    for r in doc["rows"]:
        assert r["step_time_low_s"] <= r["step_time_s"] <= r["step_time_high_s"]
    # ddp on the same ROOT: no ddp run, so no measured error, the same compute fit
    ddp = _pvision("project", str(tmp_path), "--link", "25gbe", "--workers", "2,8", "--strategy", "ddp")
    assert ddp.returncode == 0, ddp.stderr
    assert json.loads((tmp_path / store.PROJECTION_FILE).read_text())["measured"] == []
