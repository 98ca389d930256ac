"""Cut the link between two "hosts" mid-run and time how each side ends (PyTorch torchrun, JAX).

Two network namespaces joined by a veth pair (tests/netns.py): host a (10.201.0.1, rank 0, the
rendezvous store) and host b (10.201.0.2). One torchrun agent per host (`--nnodes 2
--nproc-per-node 1`), each running `python -m parallel_vision train --strategy ddp` with
`--collective-timeout T`. After rank 0's first checkpoint is written, one side's link goes down
(`ip link set pv0 down` in that namespace: packets vanish, nothing is reset). Then, for each host:

- when its `pvision` worker prints its `pvision: error:` line, and when the worker process is gone;
- whether and when its torchrun agent exits, and with which code;

watched for `--watch` seconds after the cut, then everything still running is killed and both
namespaces are deleted (HostPair.close()), pass or fail. One JSON line per run on stdout (plus the
error lines and the agents' last lines), so a later session can rerun any variant:

    sudo -E python benchmarks/partition_netns.py --cut b                       # c10d, test's rdzv-conf
    sudo -E python benchmarks/partition_netns.py --cut a
    sudo -E python benchmarks/partition_netns.py --cut b --rdzv-conf read_timeout=5
    sudo -E python benchmarks/partition_netns.py --cut b --backend static
    sudo -E python benchmarks/partition_netns.py --cut b --framework jax      # heartbeat = --collective-timeout

Needs root (namespaces) and PVISION_DATA_DIR. Tiny on purpose (paper_cnn, 1024 train images,
`--threads 1`): it shares two cores. Bounded: start-up deadline + --watch + cleanup.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from netns import HostPair, kill_group  # noqa: E402

PORT = 29400
RUN = ["--batch-size", "128", "--limit-train", "1024", "--limit-test", "200",
       "--threads", "1", "--device", "cpu", "--seed", "0", "--quiet"]
FOREIGN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR",
               "MASTER_PORT", "TORCHELASTIC_RUN_ID", "TF_CONFIG", "PVISION_DIST_TIMEOUT_S",
               "PVISION_LAUNCH_TIME", "PVISION_PROGRESS")


def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV and not k.startswith("KERAS_DISTRIBUTION")}
    e.update(PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1", TF_CPP_MIN_LOG_LEVEL="2", **extra)
    return e


def torch_argv(host, rank: int, a_addr: str, tag: str, args: argparse.Namespace, out: Path) -> list[str]:
    argv = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
            "--node-rank", str(rank), "--local-addr", host.addr, "--max-restarts", str(args.max_restarts),
            "--monitor-interval", str(args.monitor_interval)]
    if args.backend == "static":
        argv += ["--rdzv-backend", "static", "--master-addr", a_addr, "--master-port", str(PORT)]
    else:
        conf = f"is_host={int(rank == 0)}" + (f",{args.rdzv_conf}" if args.rdzv_conf else "")
        argv += ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"{a_addr}:{PORT}", "--rdzv-id", tag,
                 "--rdzv-conf", conf]
    argv += ["-m", "parallel_vision", "train", "--framework", "torch", "--strategy", "ddp",
             "--epochs", str(args.epochs), *RUN,
             "--collective-timeout", str(args.collective_timeout), "--out", str(out)]
    return host.command(argv)


def jax_argv(host, rank: int, a_addr: str, args: argparse.Namespace, out: Path) -> list[str]:
    """JAX's gloo binds and advertises the address its host name resolves to (no interface option reaches it
    through jax.distributed), so each namespace also gets its own UTS namespace whose host name IS its address:
    a numeric name resolves to itself, with no /etc/hosts entry."""
    train = [sys.executable, "-m", "parallel_vision", "train", "--framework", "jax", "--strategy", "multiworker",
             "--epochs", str(args.epochs), *RUN, "--collective-timeout", str(args.collective_timeout),
             "--out", str(out)]
    return host.command(["unshare", "--uts", "sh", "-c", f'hostname {host.addr} && exec "$@"', "sh", *train])


def alive(pid: int) -> bool:
    try:
        st = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return st.rsplit(")", 1)[1].split()[0] != "Z"


def error_line(text: str) -> str | None:
    lines = [ln for ln in text.splitlines() if ln.startswith("pvision: error:")]
    return lines[-1] if lines else None


def one_run(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="pv-partition-"))
    record: dict = {"max_restarts": args.max_restarts, "epochs": args.epochs, "framework": args.framework,
                    "backend": args.backend, "cut": args.cut,
                    "rdzv_conf": args.rdzv_conf, "monitor_interval": args.monitor_interval,
                    "collective_timeout": args.collective_timeout, "watch_s": args.watch}
    procs: list[subprocess.Popen] = []
    handles = []
    with HostPair() as pair:
        a_addr = pair.a.addr
        for host in pair.hosts:  # a per-namespace sysctl: how long TCP retransmits unacknowledged data
            if args.tcp_retries2 is not None:
                subprocess.run(host.command(["sysctl", "-q", "-w", f"net.ipv4.tcp_retries2={args.tcp_retries2}"]),
                               check=True)
            record["tcp_retries2"] = subprocess.run(host.command(["sysctl", "-n", "net.ipv4.tcp_retries2"]),
                                                    capture_output=True, text=True).stdout.strip()
        outs = [tmp / "node-a", tmp / "node-b"]
        logs = [tmp / "a.log", tmp / "b.log"]
        for rank, host in enumerate(pair.hosts):
            if args.framework == "torch":
                argv = torch_argv(host, rank, a_addr, pair.tag, args, outs[rank])
                e = env(GLOO_SOCKET_IFNAME=host.ifname, TP_SOCKET_IFNAME=host.ifname)
            else:
                argv = jax_argv(host, rank, a_addr, args, outs[rank])
                e = env(KERAS_DISTRIBUTION_JOB_ADDRESSES=",".join(f"{h.addr}:{PORT}" for h in pair.hosts),
                        KERAS_DISTRIBUTION_NUM_PROCESSES="2", KERAS_DISTRIBUTION_PROCESS_ID=str(rank),
                        GLOO_SOCKET_IFNAME=host.ifname)
            h = open(logs[rank], "wb")  # noqa: SIM115
            handles.append(h)
            procs.append(subprocess.Popen(argv, env=e, stdout=h, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True))
        try:
            t0 = time.monotonic()
            # torch: rank 0's checkpoint after epoch 1; JAX: its first epoch-end backup (OUT/jax_backup/).
            ckpt = outs[0] / ("checkpoint.json" if args.framework == "torch" else "jax_backup")
            while not (ckpt.exists() and (ckpt.is_file() or any(ckpt.iterdir()))):
                if time.monotonic() - t0 > args.start_deadline or any(p.poll() is not None for p in procs):
                    record["failed_to_start"] = [p.poll() for p in procs]
                    record["tails"] = [lg.read_text(errors="replace")[-1500:] for lg in logs]
                    return record
                time.sleep(0.2)
            record["first_checkpoint_s"] = round(time.monotonic() - t0, 1)
            time.sleep(1.0)
            workers = ([h.training_pids() for h in pair.hosts] if args.framework == "torch"
                       else [[p.pid] for p in procs])
            if args.cut == "kill-b-worker":  # a worker dies (connections reset): for --max-restarts
                for pid in workers[1]:
                    os.kill(pid, signal.SIGKILL)
            elif args.cut == "freeze-a":  # the link stays up: rank 0's worker stops (SIGSTOP), its agent lives
                for pid in workers[0]:
                    os.kill(pid, signal.SIGSTOP)
            else:
                (pair.a if args.cut == "a" else pair.b).cut()
            cut_at = time.monotonic()
            seen: dict[str, float] = {}
            while time.monotonic() - cut_at < args.watch:
                now = round(time.monotonic() - cut_at, 1)
                for i, name in enumerate("ab"):
                    if f"{name}_line_s" not in seen and error_line(logs[i].read_text(errors="replace")):
                        seen[f"{name}_line_s"] = now
                    if f"{name}_worker_gone_s" not in seen and not any(alive(p) for p in workers[i]):
                        seen[f"{name}_worker_gone_s"] = now
                    if f"{name}_agent_exit_s" not in seen and procs[i].poll() is not None:
                        seen[f"{name}_agent_exit_s"] = now
                if all(p.poll() is not None for p in procs):
                    break
                time.sleep(0.1)
            record.update(seen)
            record["rc"] = [p.poll() for p in procs]  # None: still running when the watch ended
            # Where a still-running agent is blocked: PYTHONFAULTHANDLER=1 makes SIGABRT dump its Python stack.
            for p in procs:
                if p.poll() is None:
                    os.kill(p.pid, signal.SIGABRT)
            time.sleep(1.0)
        finally:
            for p in procs:
                kill_group(p)
            for h in handles:
                h.close()
    # HostPair.close() deleted both namespaces; a killed process still exiting can delay that: make sure.
    for _ in range(100):
        left = [n for n in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
                if pair.tag in n]
        if not left:
            break
        for n in left:
            subprocess.run(["ip", "netns", "del", n], capture_output=True)
        time.sleep(0.2)
    record["namespaces_left"] = left
    for i, name in enumerate("ab"):
        text = logs[i].read_text(errors="replace")
        record[f"{name}_line"] = error_line(text)
        codes = re.findall(r"exitcode\s*:\s*(-?\d+)", text)
        record[f"{name}_worker_exitcode_reported_by_agent"] = codes[-1] if codes else None
        record[f"{name}_tail"] = "\n".join(ln for ln in text.splitlines()[-12:])
        if "Fatal Python error: Aborted" in text:
            record[f"{name}_agent_stack"] = text[text.index("Fatal Python error: Aborted"):][:3000]
    result = outs[0] / "result.json"
    if result.exists():
        data = json.loads(result.read_text())
        record["result"] = {"status": data.get("status"), "epochs": len(data.get("epochs", [])),
                            "restart_count": data.get("elastic", {}).get("restart_count"),
                            "resumed_from": data.get("reliability", {}).get("resumed_from")}
    record["logs"] = str(tmp)
    return record


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--framework", choices=["torch", "jax"], default="torch")
    ap.add_argument("--backend", choices=["c10d", "static"], default="c10d")
    ap.add_argument("--cut", choices=["a", "b", "freeze-a", "kill-b-worker"], default="b",
                    help="whose link goes down (a: rank 0 / store host); freeze-a: SIGSTOP rank 0's worker, link up; "
                         "kill-b-worker: SIGKILL host b's worker (with --max-restarts 1 --epochs 4: recovery)")
    ap.add_argument("--rdzv-conf", default="join_timeout=60,read_timeout=20",
                    help="extra c10d --rdzv-conf (is_host is added); default: tests/test_multinode.py's")
    ap.add_argument("--monitor-interval", type=float, default=0.5)
    ap.add_argument("--collective-timeout", type=float, default=20)
    ap.add_argument("--watch", type=float, default=90, help="seconds to watch after the cut")
    ap.add_argument("--start-deadline", type=float, default=150)
    ap.add_argument("--tcp-retries2", type=int, default=None,
                    help="set net.ipv4.tcp_retries2 in both namespaces (kernel default 15: ~15 min)")
    ap.add_argument("--epochs", type=int, default=200, help="long enough to be training at the cut")
    ap.add_argument("--max-restarts", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    for _ in range(args.repeat):
        rec = one_run(args)
        print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
