"""Validate `pvision project --strategy pipeline` on emulated links, as benchmarks/projection_netns.py does DDP's:
two network-namespace hosts joined by a tbf-shaped veth pair, one core each.

1. Calibrate from single-host runs only, every worker 1 thread on its own core: 1-process `single` runs at the
   micro-batch and at the batch (the T_c(b) fit, for the block model), and a 2-stage pipeline run over loopback
   inside one namespace (torchrun, 2 agents, one per core): its summary.pipeline.per_stage gives the stage times
   and its send_recv bytes the activation bytes, as `pvision project` takes them.
2. For each link setting: `pvision linktest` across the two hosts, then the measured 2-stage pipeline run across
   them (stage 0 on host a, stage 1 on host b).
3. Project that step from 1. and that setting's linktest only (mp_calibrate.pipeline_step, the code `pvision
   project --strategy pipeline` runs) and compare with the measured step. Nothing is tuned on the measured runs.
Needs root, iproute2, tc (tbf) and 2 cores.

Usage:  python benchmarks/pipeline_netns.py [--out DIR] [--settings 100mbit,1gbit]
Writes benchmarks/results/projection-netns-pipeline-<date>.json and prints the error table (markdown).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from projection_netns import SETTINGS, _step, load, shape, single_run, torchrun_both  # noqa: E402

from netns import HostPair  # noqa: E402
from parallel_vision.projection import calibrate, mp_calibrate, root_inputs  # noqa: E402
from parallel_vision.projection.linktest import link_of, read_record  # noqa: E402

MODEL, BATCH, MICRO, STEPS = "paper_cnn", 64, 4, 6


def _pipeline_args(out: Path) -> list[str]:
    return ["train", "-f", "torch", "-s", "pipeline", "--model", MODEL, "-b", str(BATCH),
            "--microbatches", str(MICRO), "-e", "2", "--limit-train", str(BATCH * STEPS), "--limit-test", "64",
            "--threads", "1", "--device", "cpu", "--seed", "0", "--quiet", "--out", str(out), "--overwrite"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/pvision-pipeline-netns"))
    p.add_argument("--settings", default="100mbit,1gbit")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still removes the namespaces (HostPair)
    settings = [x for x in SETTINGS if x in args.settings.split(",")]
    root = args.out.resolve()
    model_root, logs = root / MODEL, root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = time.time()
    record: dict[str, Any] = {"started": datetime.now().isoformat(timespec="seconds"), "load_start": load(),
                              "strategy": "pipeline", "model": MODEL, "batch": BATCH, "microbatches": MICRO,
                              "rows": [], "links": {}}
    for batch in (BATCH // MICRO, BATCH):
        out = model_root / f"single-b{batch}"
        if not (out / "result.json").exists():
            single_run(MODEL, batch, STEPS, out, logs)
            print(f"single b={batch} done ({time.time() - started:.0f} s)", flush=True)
    with HostPair() as pair:
        loop = model_root / "pipeline-loopback"
        if not (loop / "result.json").exists():
            torchrun_both(pair, "pipeline-loopback", _pipeline_args(loop), logs, 600, loopback=True)
        inputs = root_inputs.load_inputs(model_root, MODEL, "torch", 1.0, strategy="pipeline", backend="gloo")
        fit = calibrate.compute_fit(inputs)
        scale, bytes_note = mp_calibrate.send_scale(inputs, {r["path"]: BATCH for r in inputs.ddp})
        record["calibration"] = {"fit": fit.as_dict(), "send_scale": scale, "bytes": bytes_note,
                                 "loopback_step_s": _step(json.loads((loop / "result.json").read_text())),
                                 "stage_check": mp_calibrate.stage_check(inputs, fit)}
        print(f"calibrated ({time.time() - started:.0f} s): {record['calibration']}", flush=True)
        for setting in settings:
            qdisc = shape(pair, setting)
            link_root = root / "links" / setting
            torchrun_both(pair, f"linktest-{setting}", ["linktest", str(link_root), "--budget-s", "1.0",
                                                        "--repeats", "3", "--label", setting], logs, 300)
            rec = read_record(link_root)
            record["links"][setting] = {"qdisc": qdisc, "link": rec["link"]}
            out = root / "measured" / f"pipeline-{setting}"
            torchrun_both(pair, f"pipeline-{setting}", _pipeline_args(out), logs, 600)
            measured = json.loads((out / "result.json").read_text())
            link = link_of(rec, setting)
            step, how, _ = mp_calibrate.pipeline_step(inputs, fit, 2, link=link, microbatches=MICRO, batch=BATCH,
                                                      send_scale=scale)
            got = _step(measured)
            row = {"setting": setting, "link": link.as_dict(), "measured_step_s": got,
                   "projected_step_s": step.step_s, "high_s": step.high_s, "error": step.step_s / got - 1,
                   "compute_s": step.compute_s, "exposed_s": step.exposed_s, "stage_s": step.stage_s,
                   "stage_time_from": how, "measured_per_stage": measured["summary"]["pipeline"]["per_stage"],
                   "measured_bubble": measured["summary"].get("bubble_fraction"), "load": load()}
            record["rows"].append(row)
            print(f"{setting}: measured {got * 1e3:.0f} ms, projected {step.step_s * 1e3:.0f} ms "
                  f"({row['error'] * 100:+.1f} %; high {step.high_s * 1e3:.0f} ms) ({time.time() - started:.0f} s, "
                  f"load {row['load']})", flush=True)
    record["load_end"], record["wall_s"] = load(), time.time() - started
    dest = HERE / "results" / f"projection-netns-pipeline-{datetime.now():%Y-%m-%d-%H%M}.json"
    dest.write_text(json.dumps(record, indent=2) + "\n")
    print("| link setting | linktest: Gb/s, µs | measured step (ms) | projected (ms) | high (ms) | error | load |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in record["rows"]:
        print(f"| {r['setting']} | {r['link']['bandwidth_gbps']:.3g}, {r['link']['latency_us']:.0f} | "
              f"{r['measured_step_s'] * 1e3:.0f} | {r['projected_step_s'] * 1e3:.0f} | {r['high_s'] * 1e3:.0f} | "
              f"{r['error'] * 100:+.1f} % | {r['load']} |")
    print(f"written: {dest}")


if __name__ == "__main__":
    main()
