"""Validate `pvision project` on emulated links: two network-namespace hosts, a veth pair shaped with tc.

For each model (paper_cnn, resnet18 on small MNIST subsets):
  1. calibrate from single-host runs only: 1-process `single` runs, 1 thread, pinned to one core
     (taskset), at three per-worker batches (the T_c(b) fit);
  2. for each link setting (tbf rate on both ends of the veth pair; unshaped = veth as it is; this
     kernel has no netem, so no added delay): `pvision linktest` under torchrun across the two hosts,
     then the measured run: torchrun, 2 nodes × 1 process (each host pinned to its own core), DDP;
  3. project that N = 2, 2-node step from the 1-process fit + that setting's linktest only, with
     `projection.calibrate` (the code `pvision project` runs), and compare with the measured step.
Nothing is tuned on the measured points. Needs root, iproute2, tc (tbf) and 2 cores.

Usage:  python benchmarks/projection_netns.py [--out DIR] [--models paper_cnn,resnet18]
Writes benchmarks/results/projection-netns-<date>.json and prints the error table (markdown).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from netns import HostPair, kill_group  # noqa: E402
from parallel_vision.projection import calibrate  # noqa: E402
from parallel_vision.projection.linktest import link_of, read_record  # noqa: E402
from parallel_vision.projection.model import Scenario, project_point  # noqa: E402

#: model → (per-worker batch of the measured run, steps per epoch, link settings to run)
PLAN: dict[str, tuple[int, int, tuple[str, ...]]] = {
    "paper_cnn": (64, 8, ("10mbit", "100mbit", "1gbit", "unshaped")),
    # 10 Mbit/s would take ~36 s per step for ResNet-18's 44.7 MB of gradients: left out.
    "resnet18": (16, 5, ("100mbit", "1gbit", "unshaped")),
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


def shape(pair: HostPair, setting: str) -> str:
    """tbf on both ends' egress (so both directions); burst ≥ a GSO super-packet (64 KB) or tbf drops it."""
    for host in pair.hosts:
        subprocess.run(["tc", "-n", host.netns, "qdisc", "del", "dev", host.ifname, "root"], capture_output=True)
        if setting == "unshaped":
            continue
        rate = RATE_BITS[setting]
        burst = max(128 * 1024, int(rate / 8 / 50))
        subprocess.run(["tc", "-n", host.netns, "qdisc", "add", "dev", host.ifname, "root", "tbf", "rate",
                        f"{int(rate)}bit", "burst", str(burst), "latency", "400ms"], check=True, capture_output=True)
    out = subprocess.run(["tc", "-n", pair.a.netns, "qdisc", "show", "dev", pair.a.ifname], capture_output=True,
                         text=True)
    return out.stdout.strip()


def torchrun_both(pair: HostPair, tag: str, args: list[str], log_dir: Path, deadline_s: float) -> None:
    """`python -m torch.distributed.run … -m parallel_vision ARGS` on both hosts, host a on core 0, b on core 1."""
    procs = []
    for rank, host in enumerate(pair.hosts):
        argv = host.command(["taskset", "-c", str(rank), sys.executable, "-m", "torch.distributed.run",
                             "--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(rank),
                             "--rdzv-backend", "c10d", "--rdzv-endpoint", f"{pair.a.addr}:{RDZV_PORT}",
                             "--rdzv-id", tag, "--local-addr", host.addr,
                             "--rdzv-conf", f"is_host={int(rank == 0)},join_timeout=60,read_timeout=30",
                             "-m", "parallel_vision", *args])
        log = open(log_dir / f"{tag}-{rank}.log", "wb")  # noqa: SIM115
        procs.append((subprocess.Popen(argv, env=_env(GLOO_SOCKET_IFNAME=host.ifname, TP_SOCKET_IFNAME=host.ifname),
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


def single_run(model: str, batch: int, steps: int, out: Path, log_dir: Path) -> None:
    args = ["train", "-f", "torch", "-s", "single", "--model", model, "-b", str(batch), "-e", "2",
            "--limit-train", str(batch * steps), "--limit-test", "64", "--threads", "1", "--device", "cpu",
            "--seed", "0", "--quiet", "--out", str(out)]
    with open(log_dir / f"{out.name}.log", "wb") as log:
        subprocess.run(["taskset", "-c", "0", sys.executable, "-m", "parallel_vision", *args], env=_env(),
                       stdout=log, stderr=subprocess.STDOUT, check=True, timeout=600)


def load() -> str:
    return open("/proc/loadavg").read().split()[:3].__str__()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/pvision-projection-netns"))
    p.add_argument("--models", default="paper_cnn,resnet18")
    args = p.parse_args()
    models = [m for m in args.models.split(",") if m]
    root = args.out.resolve()
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = time.time()
    record: dict[str, Any] = {"started": datetime.now().isoformat(timespec="seconds"), "load_start": load(),
                              "kernel": os.uname().release, "rows": [], "links": {}}
    # 1. single-host calibration runs
    for model in models:
        b, steps, _ = PLAN[model]
        for batch in (b // 2, b, 2 * b):
            out = root / model / f"single-b{batch}"
            if not (out / "result.json").exists():
                single_run(model, batch, steps, out, logs)
                print(f"{model}: single b={batch} done ({time.time() - started:.0f} s)", flush=True)
    with HostPair() as pair:
        for setting in SETTINGS:
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
                out = root / model / f"ddp-{setting}"
                targs = ["train", "-f", "torch", "-s", "ddp", "--model", model, "-b", str(2 * b), "-e", "2",
                         "--limit-train", str(2 * b * steps), "--limit-test", "64", "--threads", "1",
                         "--device", "cpu", "--seed", "0", "--quiet", "--out", str(out), "--overwrite"]
                torchrun_both(pair, f"{model}-{setting}", targs, logs, 600)
                measured = json.loads((out / "result.json").read_text())
                record["rows"].append(compare(root / model, model, setting, measured, rec))
                r = record["rows"][-1]
                print(f"{model} {setting}: measured {r['measured_step_s'] * 1e3:.0f} ms, projected "
                      f"{r['projected_step_s'] * 1e3:.0f} ms ({r['error'] * 100:+.1f} %) "
                      f"({time.time() - started:.0f} s)", flush=True)
    record["load_end"] = load()
    record["wall_s"] = time.time() - started
    dest = HERE / "results" / f"projection-netns-{datetime.now():%Y-%m-%d}.json"
    dest.write_text(json.dumps(record, indent=2) + "\n")
    print(table(record))
    print(f"written: {dest}")


def compare(model_root: Path, model: str, setting: str, measured: dict[str, Any], linkrec: dict[str, Any]
            ) -> dict[str, Any]:
    """The projection calibrated from the single-host runs and this setting's linktest only."""
    inputs = calibrate.load_inputs(model_root, model, "torch", 1.0)
    fit = calibrate.compute_fit(inputs)
    link = link_of(linkrec, setting)
    b = int(measured["summary"]["per_worker_batch"])
    p = project_point(Scenario(2, 2, link, link), b, fit, inputs.buckets)
    s = measured["summary"]
    m_step = s["mean_epoch_time_excl_warmup_s"] / s["steps_per_epoch"]
    steady = measured["epochs"][1:] or measured["epochs"]
    hook = sum(e["comm_time_s"] or 0 for e in steady) / (len(steady) * s["steps_per_epoch"])
    return {"model": model, "setting": setting, "per_worker_batch": b, "measured_step_s": m_step,
            "projected_step_s": p.step_time_s, "low_s": p.step_time_low_s, "high_s": p.step_time_high_s,
            "error": p.step_time_s / m_step - 1, "compute_s": p.compute_s, "exposed_comm_s": p.exposed_comm_s,
            "modelled_comm_s": p.comm_s, "hook_comm_per_step_s": hook, "fit": fit.as_dict(),
            "link": link.as_dict()}


def table(record: dict[str, Any]) -> str:
    lines = ["| model | link setting | linktest: Gb/s, µs | measured step (ms) | projected (ms) | band (ms) "
             "| error | T_c (ms) | comm: model / hook (ms) |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in record["rows"]:
        lines.append(f"| {r['model']} | {r['setting']} | {r['link']['bandwidth_gbps']:.3g}, "
                     f"{r['link']['latency_us']:.0f} | {r['measured_step_s'] * 1e3:.0f} | "
                     f"{r['projected_step_s'] * 1e3:.0f} | {r['low_s'] * 1e3:.0f}–{r['high_s'] * 1e3:.0f} | "
                     f"{r['error'] * 100:+.1f} % | {r['compute_s'] * 1e3:.0f} | {r['modelled_comm_s'] * 1e3:.0f} / "
                     f"{r['hook_comm_per_step_s'] * 1e3:.0f} |")
    lines.append(f"\nload average at start {record['load_start']}, at end {record['load_end']}; "
                 f"wall {record['wall_s']:.0f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
