"""Validate `pvision project` on emulated links: two network-namespace hosts, a veth pair shaped with tc.

For each model (paper_cnn, resnet18 on small MNIST subsets):
  1. calibrate from single-host runs only, every worker 1 thread pinned to its own core (taskset);
     γ and φ as `pvision project` takes them (calibrate.overlap → model.reconcile_overlap):
     a. 1-process `single` runs at three per-worker batches (the T_c(b) fit);
     b. the contention control: two independent `single` runs at once, one per core, at the measured
        batch, labelled `extra.control = "pair"` (γ = their step ÷ T_c: the two emulated hosts share
        this machine's memory and caches, so γ applies to them);
     c. the overlap control: a 2-worker DDP run over loopback inside one namespace, laid out as the
        validation is (torchrun, 2 agents, one per core): φ from its comm-hook time (model.overlap_efficiency);
  2. for each link setting (tbf rate on both ends of the veth pair; unshaped = veth as it is; this
     kernel has no netem, so no added delay): `pvision linktest` under torchrun across the two hosts,
     then the measured run: torchrun, 2 nodes × 1 process (each host pinned to its own core), DDP;
  3. project that N = 2, 2-node step from 1. and that setting's linktest only (projection.model, the code
     `pvision project` runs), and compare with the measured step.
Nothing is tuned on the measured points. Needs root, iproute2, tc (tbf) and 2 cores.

`--strategy zero1|fsdp` does the same for the sharded strategies (`pvision project --strategy`): the loopback
run (c) and the measured runs are of that strategy, the projection is collectives.project_strategy over the
link, with γ and φ from calibrate.calibrate_run: the loopback run's comm time where the engine timed it, else
(fsdp) its collectives over a loopback linktest, taken inside host a as the loopback run is; the bytes of
each collective kind are the measured run's summary.comm_bytes_by_op where it has them.

Usage:  python benchmarks/projection_netns.py [--out DIR] [--models paper_cnn,resnet18] [--strategy ddp]
Writes benchmarks/results/projection-netns-<date>.json and prints the error table (markdown).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from netns import HostPair, kill_group  # noqa: E402
from parallel_vision.projection import calibrate, records, root_inputs  # noqa: E402
from parallel_vision.projection.linktest import link_of, read_record  # noqa: E402
from parallel_vision.projection.model import Scenario, project_point, reconcile_overlap  # noqa: E402

#: model → (per-worker batch of the measured run, steps per epoch, link settings to run)
PLAN: dict[str, tuple[int, int, tuple[str, ...]]] = {
    "paper_cnn": (64, 8, ("10mbit", "100mbit", "1gbit", "unshaped")),
    # 10 Mbit/s would take ~36 s per step for ResNet-18's 44.7 MB of gradients: left out.
    "resnet18": (16, 5, ("100mbit", "1gbit", "unshaped")),
    # 80 MB of parameters: FSDP's step moves ~160 MB-equivalents over gloo (13 s at 100 Mbit/s)
    "wide_mlp": (64, 4, ("100mbit", "1gbit", "unshaped")),
}
SETTINGS = ("10mbit", "100mbit", "1gbit", "unshaped")
RATE_BITS = {"10mbit": 10e6, "100mbit": 100e6, "1gbit": 1e9}
RDZV_PORT = 29400
FOREIGN = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT",
           "TORCHELASTIC_RUN_ID", "GLOO_SOCKET_IFNAME", "GROUP_WORLD_SIZE")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN}
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", **extra)
    return env


#: tbf's bucket: 128 KB, two GSO super-packets (tbf drops a packet larger than its burst). A burst is
#: credit the link hands out after an idle spell (refilled in burst/rate: 105 ms at 10 Mbit/s, 1 ms at
#: 1 Gbit/s), which a real NIC does not give; a fixed small one keeps that credit ≤ 1 % of a step's
#: traffic at 100 Mbit/s and 1 Gbit/s (rate/50, used before, gave 20 ms of it at every rate: 2.5 MB,
#: most of paper_cnn's 3.6 MB, at 1 Gbit/s). Queue: `latency 400ms` (limit = rate × 0.4 s + burst).
TBF_BURST = 128 * 1024
TBF_LATENCY = "400ms"


def shape(pair: HostPair, setting: str) -> str:
    """tbf on both ends' egress (so both directions)."""
    for host in pair.hosts:
        subprocess.run(["tc", "-n", host.netns, "qdisc", "del", "dev", host.ifname, "root"], capture_output=True)
        if setting == "unshaped":
            continue
        rate = RATE_BITS[setting]
        subprocess.run(["tc", "-n", host.netns, "qdisc", "add", "dev", host.ifname, "root", "tbf", "rate",
                        f"{int(rate)}bit", "burst", str(TBF_BURST), "latency", TBF_LATENCY], check=True,
                       capture_output=True)
    out = subprocess.run(["tc", "-n", pair.a.netns, "qdisc", "show", "dev", pair.a.ifname], capture_output=True,
                         text=True)
    return out.stdout.strip()


def torchrun_both(pair: HostPair, tag: str, args: list[str], log_dir: Path, deadline_s: float,
                  loopback: bool = False) -> None:
    """`python -m torch.distributed.run … -m parallel_vision ARGS` on both hosts, host a on core 0, b on core 1.
    `loopback`: both agents inside host a's namespace, over its loopback (the single-host layout)."""
    procs = []
    hosts = (pair.a, pair.a) if loopback else pair.hosts
    addr = "127.0.0.1" if loopback else pair.a.addr
    for rank, host in enumerate(hosts):
        local = "127.0.0.1" if loopback else host.addr
        ifname = "lo" if loopback else host.ifname
        argv = host.command(["taskset", "-c", str(rank), sys.executable, "-m", "torch.distributed.run",
                             "--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(rank),
                             "--rdzv-backend", "c10d", "--rdzv-endpoint", f"{addr}:{RDZV_PORT}",
                             "--rdzv-id", tag, "--local-addr", local,
                             "--rdzv-conf", f"is_host={int(rank == 0)},join_timeout=60,read_timeout=30",
                             "-m", "parallel_vision", *args])
        log = open(log_dir / f"{tag}-{rank}.log", "wb")  # noqa: SIM115
        procs.append((subprocess.Popen(argv, env=_env(GLOO_SOCKET_IFNAME=ifname, TP_SOCKET_IFNAME=ifname),
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True), log))
    end = time.monotonic() + deadline_s
    try:
        while any(p.poll() is None for p, _ in procs):
            if time.monotonic() > end:
                raise RuntimeError(f"{tag}: still running after {deadline_s:.0f} s")
            time.sleep(0.2)
        for rank, (p, _) in enumerate(procs):
            if p.returncode:
                tail = (log_dir / f"{tag}-{rank}.log").read_text(errors="replace")[-1500:]
                raise RuntimeError(f"{tag} rank {rank} failed (rc {p.returncode}):\n{tail}")
    finally:
        for p, log in procs:
            kill_group(p)
            log.close()


def _single_args(model: str, batch: int, steps: int, out: Path) -> list[str]:
    return ["train", "-f", "torch", "-s", "single", "--model", model, "-b", str(batch), "-e", "2",
            "--limit-train", str(batch * steps), "--limit-test", "64", "--threads", "1", "--device", "cpu",
            "--seed", "0", "--quiet", "--out", str(out)]


def single_run(model: str, batch: int, steps: int, out: Path, log_dir: Path) -> None:
    with open(log_dir / f"{out.name}.log", "wb") as log:
        subprocess.run(["taskset", "-c", "0", sys.executable, "-m", "parallel_vision",
                        *_single_args(model, batch, steps, out)], env=_env(),
                       stdout=log, stderr=subprocess.STDOUT, check=True, timeout=600)


def pair_runs(model: str, batch: int, steps: int, model_root: Path, log_dir: Path) -> None:
    """The "two independent runs at once" control: two `single` runs, one per core, started together,
    labelled `extra.control = "pair"` (what calibrate.contention reads)."""
    config = model_root / "pair-config.json"
    config.write_text(json.dumps({"extra": {"control": "pair"}}))
    procs = []
    for core, name in enumerate(("pair-a", "pair-b")):
        log = open(log_dir / f"{model}-{name}.log", "wb")  # noqa: SIM115
        argv = ["taskset", "-c", str(core), sys.executable, "-m", "parallel_vision",
                *_single_args(model, batch, steps, model_root / name), "--config", str(config)]
        procs.append((subprocess.Popen(argv, env=_env(), stdout=log, stderr=subprocess.STDOUT), log))
    for p, log in procs:
        p.wait(timeout=600)
        log.close()
        if p.returncode:
            raise RuntimeError(f"{model} pair control failed (rc {p.returncode}): see {log_dir}")


def load() -> str:
    return str([float(x) for x in open("/proc/loadavg").read().split()[:3]])


def _hook_per_step(result: dict[str, Any]) -> float:
    s = result["summary"]
    steady = result["epochs"][1:] or result["epochs"]
    return sum(e["comm_time_s"] or 0 for e in steady) / (len(steady) * s["steps_per_epoch"])


def _step(result: dict[str, Any]) -> float:
    s = result["summary"]
    return s["mean_epoch_time_excl_warmup_s"] / s["steps_per_epoch"]


def _ddp_args(model: str, b: int, steps: int, out: Path, strategy: str = "ddp") -> list[str]:
    return ["train", "-f", "torch", "-s", strategy, "--model", model, "-b", str(2 * b), "-e", "2",
            "--limit-train", str(2 * b * steps), "--limit-test", "64", "--threads", "1",
            "--device", "cpu", "--seed", "0", "--quiet", "--out", str(out), "--overwrite"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/pvision-projection-netns2"))
    p.add_argument("--models", default="paper_cnn,resnet18")
    p.add_argument("--strategy", default="ddp", choices=("ddp", "zero1", "fsdp"))
    p.add_argument("--settings", default=",".join(SETTINGS), help="link settings to run (of each model's)")
    p.add_argument("--allgather-factor", type=float, default=None,
                   help="sharded: also project with the all-gathers this many times slower than the ring model "
                        "(a diagnostic: gloo's all-gather over the tbf link, benchmarks/collectives_netns.py)")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still removes the namespaces (HostPair)
    strategy = args.strategy
    settings = [x for x in SETTINGS if x in args.settings.split(",")]
    models = [m for m in args.models.split(",") if m]
    root = args.out.resolve()
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = time.time()
    record: dict[str, Any] = {"started": datetime.now().isoformat(timespec="seconds"), "load_start": load(),
                              "strategy": strategy,
                              "kernel": os.uname().release, "tbf": {"burst_bytes": TBF_BURST, "latency": TBF_LATENCY},
                              "rows": [], "links": {}, "calibration": {}}
    # 1a, 1b. single-host calibration runs: T_c(b), then the pair control
    for model in models:
        b, steps, _ = PLAN[model]
        for batch in (b // 2, b, 2 * b):
            out = root / model / f"single-b{batch}"
            if not (out / "result.json").exists():
                single_run(model, batch, steps, out, logs)
                print(f"{model}: single b={batch} done ({time.time() - started:.0f} s)", flush=True)
        if not (root / model / "pair-b" / "result.json").exists():
            pair_runs(model, b, steps, root / model, logs)
            print(f"{model}: pair control done ({time.time() - started:.0f} s, load {load()})", flush=True)
    with HostPair() as pair:
        if strategy != "ddp":  # the single-host link the sharded calibration costs its collectives over
            for model in models:  # `pvision linktest` on one host (nodes = 1), inside host a
                with open(logs / f"linktest-loopback-{model}.log", "wb") as log:
                    subprocess.run(pair.a.command([sys.executable, "-m", "parallel_vision", "linktest",
                                                   str(root / model), "--workers", "2", "--budget-s", "1.0",
                                                   "--repeats", "3", "--label", "loopback"]),
                                   env=_env(), stdout=log, stderr=subprocess.STDOUT, check=True, timeout=300)
        # 1c. the overlap control: single-host run of the strategy over loopback, one core per worker
        for model in models:
            b, steps, _ = PLAN[model]
            out = root / model / ("ddp-loopback" if strategy == "ddp" else f"{strategy}-loopback")
            torchrun_both(pair, f"{model}-{strategy}-loopback", _ddp_args(model, b, steps, out, strategy), logs, 600,
                          loopback=True)
            loop = json.loads((out / "result.json").read_text())
            record["calibration"][model] = (calibration(root / model, model, loop) if strategy == "ddp" else
                                            sharded_calibration(root / model, model, strategy, out))
            c = record["calibration"][model]
            print(f"{model}: γ {c['gamma']:.3f}, φ {c['phi']} (loopback step {c['loopback_step_s'] * 1e3:.0f} ms, "
                  f"hook {c['loopback_hook_s'] * 1e3:.0f} ms) ({time.time() - started:.0f} s, load {load()})",
                  flush=True)
        # 2, 3. the shaped links
        for setting in settings:
            wanted = [m for m in models if setting in PLAN[m][2]]
            if not wanted:
                continue
            qdisc = shape(pair, setting)
            link_root = root / "links" / setting
            torchrun_both(pair, f"linktest-{setting}", ["linktest", str(link_root), "--budget-s", "1.0",
                                                        "--repeats", "3", "--label", setting], logs, 300)
            rec = read_record(link_root)
            record["links"][setting] = {"qdisc": qdisc, "fit": rec["fit"], "link": rec["link"],
                                        "points": [(q["bytes"], q["seconds"]) for q in rec["points"]]}
            print(f"linktest {setting}: {rec['link']['bandwidth_gbps']:.3g} Gb/s, {rec['link']['latency_us']:.0f} us "
                  f"({time.time() - started:.0f} s)", flush=True)
            for model in wanted:
                b, steps, _ = PLAN[model]
                out = root / model / (f"ddp-{setting}" if strategy == "ddp" else f"{strategy}-{setting}")
                torchrun_both(pair, f"{model}-{strategy}-{setting}", _ddp_args(model, b, steps, out, strategy), logs,
                              600)
                measured = json.loads((out / "result.json").read_text())
                cal = record["calibration"][model]
                record["rows"].append(compare(cal, model, setting, measured, rec) if strategy == "ddp" else
                                      sharded_compare(cal, root / model, model, strategy, setting, measured, rec,
                                                      args.allgather_factor))
                r = record["rows"][-1]
                print(f"{model} {setting}: measured {r['measured_step_s'] * 1e3:.0f} ms, projected "
                      f"{r['projected_step_s'] * 1e3:.0f} ms ({r['error'] * 100:+.1f} %) "
                      f"({time.time() - started:.0f} s, load {r['load']})", flush=True)
    record["load_end"] = load()
    record["wall_s"] = time.time() - started
    tag = "" if strategy == "ddp" else f"{strategy}-"
    dest = HERE / "results" / f"projection-netns-{tag}{datetime.now():%Y-%m-%d-%H%M}.json"
    dest.write_text(json.dumps(record, indent=2) + "\n")
    print(table(record))
    print(f"written: {dest}")


def calibration(model_root: Path, model: str, loopback: dict[str, Any]) -> dict[str, Any]:
    """T_c(b), γ from the pair control and φ from the loopback DDP run: single-host measurements only."""
    inputs = root_inputs.load_inputs(model_root, model, "torch", 1.0)
    fit = calibrate.compute_fit(inputs)
    pair_gamma, gamma_note = calibrate.contention(inputs, fit)
    b = int(loopback["summary"]["per_worker_batch"])
    step, hook = _step(loopback), _hook_per_step(loopback)
    cal = reconcile_overlap(inputs.buckets, step, fit.step_s(b), hook, pair_gamma)
    return {"fit": fit.as_dict(), "gamma": cal.gamma, "pair_gamma": pair_gamma, "gamma_note": gamma_note,
            "phi": cal.phi, "how": cal.how,
            "pair_steps_s": [records.step_s(r) for r in inputs.pairs], "loopback_step_s": step,
            "loopback_hook_s": hook, "buckets": [bk.bytes for bk in inputs.buckets]}


def compare(cal: dict[str, Any], model: str, setting: str, measured: dict[str, Any], linkrec: dict[str, Any]
            ) -> dict[str, Any]:
    """The projection from the single-host calibration and this setting's linktest only. The two emulated
    hosts share this machine, so γ applies (shared_machine); φ = 1 where the loopback run cannot tell."""
    from parallel_vision.models.catalog import layer_specs
    from parallel_vision.projection.model import ComputeFit, ddp_buckets

    f = cal["fit"]
    fit = ComputeFit(f["c0_s"], f["c1_s_per_image"], tuple((q["per_worker_batch"], q["step_s"]) for q in f["points"]),
                     f["kind"])
    buckets = ddp_buckets(layer_specs(model, 1, 28, 10))
    link = link_of(linkrec, setting)
    b = int(measured["summary"]["per_worker_batch"])
    phi = 1.0 if cal["phi"] is None else cal["phi"]
    kw = {"contention": cal["gamma"], "shared_machine": True}
    p = project_point(Scenario(2, 2, link, link), b, fit, buckets, overlap=phi, **kw)
    p1 = project_point(Scenario(2, 2, link, link), b, fit, buckets, overlap=1.0, **kw)
    m_step = _step(measured)
    return {"model": model, "setting": setting, "per_worker_batch": b, "measured_step_s": m_step,
            "projected_step_s": p.step_time_s, "low_s": p.step_time_low_s, "high_s": p.step_time_high_s,
            "error": p.step_time_s / m_step - 1, "compute_s": p.compute_s, "exposed_comm_s": p.exposed_comm_s,
            "modelled_comm_s": p.comm_s, "hook_comm_per_step_s": _hook_per_step(measured), "gamma": cal["gamma"],
            "phi": phi, "projected_phi1_s": p1.step_time_s, "error_phi1": p1.step_time_s / m_step - 1,
            "link": link.as_dict(), "load": load()}


def sharded_calibration(model_root: Path, model: str, strategy: str, loopback_dir: Path) -> dict[str, Any]:
    """T_c(b), γ (pair control) and φ from the loopback run of the strategy, as `pvision project --strategy`
    takes them (calibrate.calibrate_run: its comm time, or its collectives over the loopback linktest)."""
    inputs = root_inputs.load_inputs(model_root, model, "torch", 1.0, strategy=strategy, backend="gloo")
    fit = calibrate.compute_fit(inputs)
    pair_gamma, gamma_note = calibrate.contention(inputs, fit)
    [loop] = [r for r in inputs.ddp if Path(r["path"]).name == loopback_dir.name]
    b = int(loop["summary"]["per_worker_batch"])
    cal = calibrate.calibrate_run(inputs, loop, fit.step_s(b), pair_gamma) or {"overlap": None, "gamma": pair_gamma,
                                                                               "how": "no comm time",
                                                                               "hook_comm_per_step_s": 0.0}
    return {"fit": fit.as_dict(), "gamma": cal["gamma"], "pair_gamma": pair_gamma, "gamma_note": gamma_note,
            "phi": cal["overlap"], "how": cal["how"], "comm_source": cal.get("comm_source"),
            "exposed_outside_hook_s": cal.get("exposed_outside_hook_s"),
            "pair_steps_s": [records.step_s(r) for r in inputs.pairs], "loopback_step_s": records.step_s(loop),
            "loopback_hook_s": cal["hook_comm_per_step_s"], "loopback_comm_bytes": records.run_bytes(loop),
            "collectives": inputs.plan(2, records.run_bytes(loop), records.run_partition(loop)).describe()}


def sharded_compare(cal: dict[str, Any], model_root: Path, model: str, strategy: str, setting: str,
                    measured: dict[str, Any], linkrec: dict[str, Any], ag_factor: float | None = None
                    ) -> dict[str, Any]:
    """The sharded strategy's N = 2, 2-node step from the single-host calibration and this setting's linktest."""
    from dataclasses import replace

    from parallel_vision.projection.collectives import project_strategy
    from parallel_vision.projection.model import ComputeFit

    f = cal["fit"]
    fit = ComputeFit(f["c0_s"], f["c1_s_per_image"], tuple((q["per_worker_batch"], q["step_s"]) for q in f["points"]),
                     f["kind"])
    inputs = root_inputs.load_inputs(model_root, model, "torch", 1.0, strategy=strategy, backend="gloo")
    plan = inputs.plan(2, records.run_bytes(measured), records.run_partition(measured))
    link = link_of(linkrec, setting)
    b = int(measured["summary"]["per_worker_batch"])
    phi = 1.0 if cal["phi"] is None else cal["phi"]
    kw = {"contention": cal["gamma"], "shared_machine": True, "backend": "gloo"}
    p = project_strategy(plan, Scenario(2, 2, link, link), b, fit, overlap=phi, **kw)
    p1 = project_strategy(plan, Scenario(2, 2, link, link), b, fit, overlap=1.0, **kw)
    m_step = _step(measured)
    diag = {}
    if ag_factor:
        slow = replace(plan, all_gather_scale=plan.all_gather_scale * ag_factor)
        pa = project_strategy(slow, Scenario(2, 2, link, link), b, fit, overlap=phi, **kw)
        diag = {"allgather_factor": ag_factor, "projected_ag_factor_s": pa.step_time_s,
                "error_ag_factor": pa.step_time_s / m_step - 1}
    hook = [e.get("comm_time_s") for e in (measured["epochs"][1:] or measured["epochs"])]
    return {"model": model, "strategy": strategy, "setting": setting, "per_worker_batch": b, "measured_step_s": m_step,
            "projected_step_s": p.step_time_s, "low_s": p.step_time_low_s, "high_s": p.step_time_high_s,
            "error": p.step_time_s / m_step - 1, "compute_s": p.compute_s, "exposed_comm_s": p.exposed_comm_s,
            "modelled_comm_s": p.comm_s, "comm_by_op_s": p.extra.get("comm_by_op_s"),
            "hook_comm_per_step_s": _hook_per_step(measured) if all(h is not None for h in hook) else 0.0,
            "comm_bytes_by_op": measured["summary"].get("comm_bytes_by_op"), "gamma": cal["gamma"], "phi": phi,
            "projected_phi1_s": p1.step_time_s, "error_phi1": p1.step_time_s / m_step - 1,
            "link": link.as_dict(), "load": load(), **diag}


def table(record: dict[str, Any]) -> str:
    lines = [f"strategy: {record.get('strategy', 'ddp')}",
             "| model | link setting | linktest: Gb/s, µs | measured step (ms) | projected (ms) | band (ms) "
             "| error | T_c·γ (ms) | φ | comm: model / hook (ms) | load (1 min) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in record["rows"]:
        if "error_ag_factor" in r:
            r = {**r, "load": f"{r['load']}; AG ×{r['allgather_factor']:g}: {r['error_ag_factor'] * 100:+.1f} %"}
        lines.append(f"| {r['model']} | {r['setting']} | {r['link']['bandwidth_gbps']:.3g}, "
                     f"{r['link']['latency_us']:.0f} | {r['measured_step_s'] * 1e3:.0f} | "
                     f"{r['projected_step_s'] * 1e3:.0f} | {r['low_s'] * 1e3:.0f}–{r['high_s'] * 1e3:.0f} | "
                     f"{r['error'] * 100:+.1f} % | {r['compute_s'] * 1e3:.0f} | {r['phi']:.2f} | "
                     f"{r['modelled_comm_s'] * 1e3:.0f} / {r['hook_comm_per_step_s'] * 1e3:.0f} | "
                     f"{r['load']} |")
    for model, c in record["calibration"].items():
        lines.append(f"\n{model}: T_c(b) = {c['fit']['c0_s'] * 1e3:.1f} ms + {c['fit']['c1_s_per_image'] * 1e3:.2f} "
                     f"ms/image ({c['fit']['kind']}); pair control γ = {c['pair_gamma']:.3f}, used γ = "
                     f"{c['gamma']:.3f}, φ = {c['phi']} ({c['how']}) "
                     f"(loopback DDP step {c['loopback_step_s'] * 1e3:.0f} ms, "
                     f"hook {c['loopback_hook_s'] * 1e3:.0f} ms)")
    lines.append(f"\nload average at start {record['load_start']}, at end {record['load_end']}; "
                 f"wall {record['wall_s']:.0f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
