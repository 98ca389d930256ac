"""`pvision info`: what this machine offers for training, without importing any framework here.

torch, TensorFlow and JAX are each probed in a subprocess of their own (they never
share a process), so a broken or missing framework shows as such instead of
crashing the command.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import typer

from parallel_vision import allocator
from parallel_vision.provenance import host_environment

TORCH_PROBE = """
import json, torch
print(json.dumps({
    "version": torch.__version__,
    "threads": torch.get_num_threads(),
    "interop_threads": torch.get_num_interop_threads(),
    "cuda": torch.version.cuda,
    "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    "distributed_backends": [b for b, ok in (("gloo", torch.distributed.is_gloo_available()),
                             ("nccl", torch.distributed.is_nccl_available())) if ok],
    "mkldnn": torch.backends.mkldnn.is_available(),
}))
"""

TF_PROBE = """
import os, json
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf
print(json.dumps({
    "version": tf.__version__,
    "keras": __import__("keras").__version__,
    "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
    "cpus": [d.name for d in tf.config.list_physical_devices("CPU")],
    "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
}))
"""

JAX_PROBE = """
import os, json
os.environ["KERAS_BACKEND"] = "jax"
import jax, jaxlib
try:
    gpus = [d.device_kind for d in jax.devices("gpu")]
except RuntimeError:
    gpus = []
print(json.dumps({
    "version": jax.__version__,
    "jaxlib": jaxlib.__version__,
    "backend": jax.default_backend(),
    "gpus": gpus,
    "devices": [str(d) for d in jax.devices()],
}))
"""


def probe(code: str, timeout: float = 120.0) -> dict[str, Any]:
    """Run `code` in a fresh interpreter and parse the JSON it prints last."""
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"probe timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        lines = (proc.stderr or "").strip().splitlines()
        last = lines[-1] if lines else f"exit code {proc.returncode}"
        return {"error": "not installed" if "ModuleNotFoundError" in last else last}
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return {"error": "probe printed no result"}


def collect() -> dict[str, Any]:

    return {"host": host_environment(), "torch": probe(TORCH_PROBE), "tensorflow": probe(TF_PROBE),
            "jax": probe(JAX_PROBE),
            "allocator": {"torch_cpu_auto": allocator.resolve("auto"), "tcmalloc": allocator.find_tcmalloc()}}


def info(as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON.")) -> None:
    """Python, package versions, CPU, GPUs and thread settings."""
    data = collect()
    if as_json:
        print(json.dumps(data, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    host = data["host"]
    table = Table(title="Parallel Vision — this machine", show_header=False)
    table.add_row("python", host["python"])
    table.add_row("platform", host["platform"])
    table.add_row("cpu", f"{host['cpu_model']} ({host['usable_cores']} usable of {host['logical_cores']} "
                  f"logical cores; {', '.join(host['cpu_flags']) or 'no AVX'}; native bf16: "
                  f"{'yes' if host['cpu_native_bf16'] else 'no'})")
    table.add_row("memory", f"{host['memory_gib']} GiB")
    table.add_row("code", f"parallel-vision {host['packages']['parallel-vision']} ({host['code_version']})")
    for name in ("torch", "tensorflow", "jax"):
        d = data[name]
        if "error" in d:
            table.add_row(name, f"[red]{d['error']}[/red]")
            continue
        gpus = ", ".join(d["gpus"]) or "none"
        if name == "torch":
            extra = f"threads {d['threads']}, backends {', '.join(d['distributed_backends'])}"
        elif name == "tensorflow":
            extra = f"keras {d['keras']}, intra-op threads {d['intra_op_threads'] or 'auto'}"
        else:
            extra = f"jaxlib {d['jaxlib']}, devices {', '.join(d['devices'])}"
        table.add_row(name, f"{d['version']} · GPUs: {gpus} · {extra}")
    alloc = data["allocator"]
    table.add_row("allocator", f"torch CPU workers: {alloc['torch_cpu_auto']}" + (
        f" ({alloc['tcmalloc']})" if alloc["tcmalloc"] else " (no libtcmalloc found: install libtcmalloc-minimal4 "
        "for ~0.35 GiB less per worker, docs/performance.md)"))
    table.add_row("thread env", ", ".join(f"{k}={v}" for k, v in host["thread_env"].items()) or "unset")
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("info")(info)
