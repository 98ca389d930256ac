"""Why is the JAX engine slower than TensorFlow on a CPU? One thread each, the paper CNN, batch 512, side by side.

Measured, each in a fresh child process pinned to one core (XLA_FLAGS are read once, when the backend starts):

- `tf`          Keras on TensorFlow, the TF engine's step (`compile(jit_compile=False)`, `train_on_batch`).
- `keras-jax`   the JAX engine's own step (`engines.jax.model.make_functions`: Keras `stateless_call` + Adam's
                `stateless_apply` in one `jax.jit`, state donated): `default` is today's engine (Keras' max-pool),
                `+ tiled pool` the engine as shipped (engines/jax/pooling.py); also without donation, and under
                each XLA:CPU flag set of the pinned jaxlib that could matter (VARIANTS). For each: max |difference|
                against `default` on the same weights and batches (logits; the first gradient, relative; logits
                after the timed steps), whether the compiled program (optimised HLO) changed, and its library calls.
- `lax NHWC/NCHW`  the same network as a plain `jax.jit` step written with `jax.lax` (no Keras), with XLA's
                max-pool or the engine's tiled one: Keras' share against XLA's.
- `ops`         the model's heavy ops compiled alone at its shapes (conv forward / input grad / weight grad,
                BN+ReLU, max-pool, dense), in TensorFlow and in JAX (default flags, and the fastest flag set):
                where the step's time goes, in ms and GFLOP/s.

Run on a quiet 2-core machine (about 6 minutes: 20 children, most of each one's time is start-up and compiling):
    PYTHONPATH=src PVISION_DATA_DIR=../shared/datasets python benchmarks/jax_cpu.py --rounds 2
On a shared machine add `--clock step_cpu_s`: rates from each process's CPU seconds (one thread: the work itself),
which other processes on the core hardly move, where wall seconds swing several-fold. `--only LABEL,...` and
`--variants NAME,...` pick contestants; `--quick` (batch 128, 2 steps) checks the script. Writes
benchmarks/results/jax_cpu-<date>.json and prints the tables.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

#: name -> XLA_FLAGS added to the engine's one-thread flags (flag names from the jaxlib 0.10.2 binary's flag table).
VARIANTS: dict[str, str] = {
    "default": "",
    "eigen-multi-thread": "--xla_cpu_multi_thread_eigen=true",
    "onednn-custom-call": "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true",
    "onednn-fusion": "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_fusion_type=dot,eltwise,reduce",
    "xnnpack-fusion": "--xla_cpu_use_xnnpack=true --xla_cpu_experimental_xnn_fusion_type=dot,eltwise,reduce",
    "xnnpack-graph": "--xla_cpu_use_xnnpack=true "
                     "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
    "ynnpack-conv-dot": "--xla_cpu_experimental_ynn_fusion_type=individual_convolution,individual_dot",
    "fast-math": "--xla_cpu_enable_fast_math=true",
    "vector-width-512": "--xla_cpu_prefer_vector_width=512",
}
#: The engine as this branch ships it: default flags, tiled max-pool (engines/jax/pooling.py).
TILED = "keras-jax default + tiled pool (engine now)"


# --------------------------------------------------------------------------- children
def _pin(core: int) -> None:
    os.sched_setaffinity(0, {core})


def _timed(fn: Any, block: Any, reps: int) -> tuple[list[float], list[float]]:
    """Wall and process-CPU seconds per call of `fn` after one warm-up call, each call waited for. With one
    thread the CPU seconds are the work itself, and hardly move when other processes share the core."""
    block(fn())
    wall, cpu = [], []
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        block(fn())
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return wall, cpu


def _mnist(batch: int) -> tuple[Any, Any]:
    """Two batches of real MNIST training images, scaled to [0, 1], NHWC float32, int32 labels."""
    import numpy as np

    from parallel_vision.data.idx import read_idx

    raw = Path(os.environ.get("PVISION_DATA_DIR", "~/.cache/parallel-vision")).expanduser() / "mnist" / "raw"
    x = read_idx(raw / "train-images-idx3-ubyte.gz")[: 2 * batch].astype(np.float32)[..., None] / 255.0
    y = read_idx(raw / "train-labels-idx1-ubyte.gz")[: 2 * batch].astype(np.int32)
    return x, y


def _library_calls(hlo: str) -> dict[str, int]:
    """Custom calls and library fusions (oneDNN, XNNPACK, YNNPACK) in a compiled module's optimised HLO."""
    found: dict[str, int] = {}
    for name in re.findall(r'custom_call_target="([^"]+)"', hlo) + re.findall(r'"kind":"(__[a-z_]+)"', hlo):
        found[name] = found.get(name, 0) + 1
    return found


def child_keras_jax(args: argparse.Namespace, out: dict[str, Any]) -> None:
    os.environ.update(KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    import jax
    import keras
    import numpy as np

    from parallel_vision.engines.jax.model import make_functions, variable_shardings
    from parallel_vision.models.keras_cnn import build_keras_cnn

    if args.pool == "tiled":
        from parallel_vision.engines.jax.pooling import install

        install(keras)
    keras.utils.set_random_seed(0)
    devices = jax.devices()[:1]
    with keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False).scope():
        net = build_keras_cnn()
        optimizer = keras.optimizers.Adam(1e-3)
        optimizer.build(net.trainable_variables)
    mesh = jax.sharding.Mesh(devices, ("batch",))
    fake_run = argparse.Namespace(jax=jax, keras=keras, placement=argparse.Namespace(mesh=mesh))
    shardings = variable_shardings(net, optimizer)
    train_step, _ = make_functions(fake_run, net, optimizer, shardings)
    if args.no_donation:
        train_step = jax.jit(train_step.__wrapped__)  # the same step, its state not donated
    copy = lambda vs: [jax.numpy.array(v.value, copy=True) for v in vs]  # noqa: E731
    state = (copy(net.trainable_variables), copy(net.non_trainable_variables), copy(optimizer.variables),
             (np.float32(0), np.int32(0), np.int32(0)))
    x, y = _mnist(args.batch)
    xs, ys = [x[: args.batch], x[args.batch:]], [y[: args.batch], y[args.batch:]]
    logits_fn = jax.jit(lambda tv, ntv, x: net.stateless_call(tv, ntv, x, training=False)[0])
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    grad_fn = jax.jit(jax.grad(lambda tv, ntv, x, y: loss_fn(y, net.stateless_call(tv, ntv, x, training=True)[0])))
    saved = {"logits_initial": np.asarray(logits_fn(state[0], state[1], xs[0])),
             "grads_initial": np.concatenate([np.ravel(g) for g in grad_fn(state[0], state[1], xs[0], ys[0])])}
    t = time.perf_counter()
    compiled = train_step.lower(state, xs[0], ys[0]).compile()
    out["compile_s"] = time.perf_counter() - t
    hlo = compiled.as_text()
    out["library_calls"], out["hlo_sha256"] = _library_calls(hlo), hashlib.sha256(hlo.encode()).hexdigest()[:12]
    holder, i = [state], iter(range(1 << 30))

    def one() -> Any:  # the same data order in every contestant: the logits after the steps are comparable
        k = next(i) % 2
        holder[0] = compiled(holder[0], xs[k], ys[k])
        return holder[0]

    out["step_s"], out["step_cpu_s"] = _timed(one, jax.block_until_ready, args.steps)
    saved["logits_after_steps"] = np.asarray(logits_fn(holder[0][0], holder[0][1], xs[0]))
    if args.save:
        np.savez(args.save, **saved)


def child_lax(args: argparse.Namespace, out: dict[str, Any]) -> None:
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax
    from _jax_cpu_nets import lax_params, lax_train_step

    layout = "NCHW" if args.child == "lax-nchw" else "NHWC"
    step, init_state = lax_train_step(jax, layout, tiled=args.pool == "tiled")
    x, y = _mnist(args.batch)
    xb, yb, key = jax.numpy.asarray(x[: args.batch]), jax.numpy.asarray(y[: args.batch]), jax.random.PRNGKey(1)
    holder = [init_state(lax_params(jax, layout))]
    t = time.perf_counter()
    compiled = step.lower(holder[0], xb, yb, key).compile()
    out["compile_s"] = time.perf_counter() - t
    out["library_calls"] = _library_calls(compiled.as_text())

    def one() -> Any:
        holder[0], loss = compiled(holder[0], xb, yb, key)
        return loss

    out["step_s"], out["step_cpu_s"] = _timed(one, jax.block_until_ready, args.steps)


def child_tf(args: argparse.Namespace, out: dict[str, Any]) -> None:
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    from parallel_vision.models.keras_cnn import build_keras_cnn

    keras.utils.set_random_seed(0)
    net = build_keras_cnn()
    net.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False,
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    x, y = _mnist(args.batch)
    xb, yb = x[: args.batch], y[: args.batch]
    out["step_s"], out["step_cpu_s"] = _timed(lambda: net.train_on_batch(xb, yb), lambda r: r, args.steps)


def child_ops(args: argparse.Namespace, out: dict[str, Any]) -> None:
    from _jax_cpu_nets import jax_ops, tf_ops

    if args.framework == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        ops, block = tf_ops(tf, args.batch), (lambda r: r)
    else:
        os.environ["JAX_PLATFORMS"] = "cpu"
        import jax

        ops, block = jax_ops(jax, args.batch), jax.block_until_ready
    out["ops"] = {}
    for name, (fn, flops) in ops.items():
        wall, cpu = _timed(fn, block, args.op_reps)
        out["ops"][name] = {"step_s": wall, "step_cpu_s": cpu, "flops": flops}


CHILDREN = {"keras-jax": child_keras_jax, "lax-nhwc": child_lax, "lax-nchw": child_lax, "tf": child_tf,
            "ops": child_ops}


def run_child(args: argparse.Namespace) -> None:
    _pin(args.core)
    out: dict[str, Any] = {"child": args.child, "xla_flags": os.environ.get("XLA_FLAGS", "")}
    CHILDREN[args.child](args, out)
    print(json.dumps(out))


# --------------------------------------------------------------------------- parent
def engine_flags(extra: str) -> str:
    """The JAX engine's XLA_FLAGS for one thread (engines.jax.setup.xla_flags), `extra` taking precedence."""
    from parallel_vision.engines.jax.setup import xla_flags

    base = xla_flags("", None, single_thread=True).split()
    names = {f.split("=")[0] for f in extra.split()}
    flags = [f for f in base if f.split("=")[0] not in names] + extra.split()
    assert all(f.startswith("--") for f in flags), flags  # XLA ignores everything after a bare word
    return " ".join(flags)


def spawn(args: argparse.Namespace, child: str, flags: str = "", **extra: Any) -> dict[str, Any]:
    env = C.baseline_env(1)
    env["XLA_FLAGS"] = engine_flags(flags)
    env["PYTHONPATH"] = os.pathsep.join([str(C.ROOT / "src"), env.get("PYTHONPATH", "")])
    argv = [__file__, "--child", child, "--batch", str(args.batch), "--steps", str(args.steps),
            "--op-reps", str(args.op_reps), "--core", str(args.core)]
    for key, value in extra.items():
        argv += [f"--{key.replace('_', '-')}"] + ([] if value is True else [str(value)])
    if child == "keras-jax":
        argv += ["--save", str(Path(args.scratch) / f"{len(os.listdir(args.scratch))}.npz")]
    try:
        result = C.run_json_subprocess(argv, env=env, timeout=args.child_timeout)
    except Exception as exc:  # a flag the build rejects: recorded, the others still run
        return {"error": str(exc)}
    if child == "keras-jax":
        result["saved"] = argv[-1]
    return result


def differences(run: dict[str, Any], default: dict[str, Any]) -> dict[str, float | None]:
    """Max |difference| against the default path on the same weights and batch: logits before and after the
    timed steps (1 + --steps, the same batches in the same order), and the first gradient relative to its
    largest element."""
    import numpy as np

    if "saved" not in run or "saved" not in default:
        return {"logits_initial": None, "logits_after_steps": None, "grads_relative": None}
    a, b = np.load(run["saved"]), np.load(default["saved"])
    diff = {k: float(np.max(np.abs(a[k] - b[k]))) for k in ("logits_initial", "logits_after_steps")}
    diff["grads_relative"] = float(np.max(np.abs(a["grads_initial"] - b["grads_initial"]))
                                   / np.max(np.abs(b["grads_initial"])))
    diff["logit_scale"] = float(np.max(np.abs(b["logits_after_steps"])))
    return diff


def main_parent(args: argparse.Namespace) -> None:
    payload = C.header("jax_cpu.py", args)
    variants = {k: v for k, v in VARIANTS.items() if not args.variants or k in args.variants.split(",")}
    variants.setdefault("default", "")
    rows: dict[str, list[dict[str, Any]]] = {}
    started = time.perf_counter()
    args.scratch = str(C.scratch_dir(keep=False))
    for r in range(args.rounds):  # interleaved: every contestant once per round, in reverse every other round
        jobs = [("tf", "tf", "", {}), *((f"keras-jax {n}", "keras-jax", f, {}) for n, f in variants.items()),
                ("keras-jax default (no donation)", "keras-jax", "", {"no_donation": True}),
                (TILED, "keras-jax", "", {"pool": "tiled"}),
                ("lax NHWC", "lax-nhwc", "", {}), ("lax NCHW", "lax-nchw", "", {}),
                ("lax NHWC + tiled pool", "lax-nhwc", "", {"pool": "tiled"}),
                ("lax NCHW + tiled pool", "lax-nchw", "", {"pool": "tiled"})]
        jobs = [j for j in jobs if not args.only or j[0] in args.only.split(",")]
        for label, child, flags, extra in jobs if r % 2 == 0 else reversed(jobs):
            print(f"[round {r + 1}] {label} (load1 {C.load1():.1f})", flush=True)
            rows.setdefault(label, []).append(spawn(args, child, flags, **extra))
    ranked = sorted((statistics.median(rows[f"keras-jax {n}"][0][args.clock]), n) for n in variants
                    if args.clock in rows.get(f"keras-jax {n}", [{}])[0])
    best = ranked[0][1] if ranked else "default"
    if best != "default":  # the fastest flag set on top of the engine as shipped
        print(f"[after] {TILED} + {best}", flush=True)
        rows[f"{TILED} + {best}"] = [spawn(args, "keras-jax", variants[best], pool="tiled")]
    profile = {"tensorflow": spawn(args, "ops", framework="tensorflow"), "jax default": spawn(args, "ops")}
    if best != "default":
        profile[f"jax {best}"] = spawn(args, "ops", variants[best])
    payload.update(summarise(args, rows, profile, best))
    payload["wall_s"] = time.perf_counter() - started
    path = C.write_json("jax_cpu", payload)
    print(f"\nwrote {path} in {payload['wall_s']:.0f} s")


def summarise(args: argparse.Namespace, rows: dict[str, list[dict[str, Any]]], profile: dict[str, Any],
              best: str) -> dict[str, Any]:
    """Rates, ratios to TF (per round, median over rounds), logit differences, the per-op table; printed."""
    clock = args.clock
    tf_rates = [args.batch / statistics.median(r[clock]) if clock in r else None for r in rows["tf"]]
    default = rows["keras-jax default"][0]
    table, summary = [], {}
    for label, runs in rows.items():
        rates = [args.batch / statistics.median(r[clock]) if clock in r else None for r in runs]
        ratio = C.paired_ratios(tf_rates, rates) if label != "tf" and rates else None
        first = runs[0]
        diff = differences(first, default)
        entry = {"img_per_s": C.spread(rates), "step_time_over_tf": ratio, "xla_flags": first.get("xla_flags"),
                 "error": first.get("error"), "compile_s": first.get("compile_s"),
                 "library_calls": first.get("library_calls"), "max_abs_diff_vs_default": diff,
                 "same_program_as_default": first.get("hlo_sha256") == default.get("hlo_sha256")
                 if "hlo_sha256" in first else None,
                 "raw_step_s": [r.get("step_s") for r in runs], "raw_step_cpu_s": [r.get("step_cpu_s") for r in runs]}
        summary[label] = entry
        sci = lambda v: "-" if v is None else f"{v:.1e}"  # noqa: E731
        table.append([label, C.fmt_spread(entry["img_per_s"], 1), C.fmt(ratio and ratio["median"], 2),
                      sci(diff["logits_initial"]), sci(diff["grads_relative"]), sci(diff["logits_after_steps"]),
                      {True: "yes", False: "no", None: "-"}[entry["same_program_as_default"]],
                      ",".join(f"{k}x{v}" for k, v in (entry["library_calls"] or {}).items())
                      or (entry["error"] or "")[:60]])
    per = "CPU-s" if clock == "step_cpu_s" else "s"
    C.print_table(f"Train step, paper_cnn, batch {args.batch}, 1 thread, one core ({args.rounds} round(s), img/{per}); "
                  "max |difference| against keras-jax default on the same weights and batch",
                  ["contestant", "img/s", "time/TF's", "logits", "grad (rel.)",
                   f"logits, {args.steps + 1} Adam steps", "same HLO", "library calls in HLO / error"], table)
    ops_rows, ops = [], {}
    names = list(dict.fromkeys(name for p in profile.values() for name in p.get("ops", {})))
    for name in names:
        cells, ops[name] = [name], {}
        for who, p in profile.items():
            op = p.get("ops", {}).get(name)
            ms = statistics.median(op[clock]) * 1e3 if op else None
            gf = op["flops"] / ms / 1e6 if op and op["flops"] else None
            ops[name][who] = {"ms": ms, "gflop_s": gf}
            cells += [C.fmt(ms, 1), C.fmt(gf, 1)]
        tf_ms, jax_ms = ops[name].get("tensorflow", {}).get("ms"), ops[name].get("jax default", {}).get("ms")
        cells.append(C.fmt(jax_ms / tf_ms if jax_ms and tf_ms else None, 2))
        ops_rows.append(cells)
    totals = {who: sum(v[who]["ms"] or 0 for v in ops.values() if who in v) for who in profile}
    ops_rows.append(["sum", *sum(([C.fmt(t, 1), ""] for t in totals.values()), []), ""])
    C.print_table(f"Ops alone at the model's shapes, batch {args.batch}, 1 thread ({'CPU ' if per != 's' else ''}ms, "
                  "GFLOP/s)",
                  ["op", *sum(([f"{w} ms", "GFLOP/s"] for w in profile), []), "JAX/TF"], ops_rows)
    return {"contestants": summary, "best_flags": best, "profile": ops, "profile_totals_ms": totals,
            "profile_errors": {w: p.get("error") for w, p in profile.items() if p.get("error")}}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--steps", type=int, default=2, help="timed steps per contestant (after one warm-up step)")
    p.add_argument("--op-reps", type=int, default=3, help="timed calls per op in the profile")
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds (TF, JAX variants, lax) to repeat")
    p.add_argument("--variants", default="", help="comma-separated subset of the flag sets (default: all)")
    p.add_argument("--clock", choices=("step_s", "step_cpu_s"), default="step_s",
                   help="rates from wall seconds (a quiet machine), or from process CPU seconds (a shared one)")
    p.add_argument("--only", default="", help="comma-separated contestant labels to run (default: all)")
    p.add_argument("--core", type=int, default=max(os.sched_getaffinity(0)), help="the core every child runs on")
    p.add_argument("--child-timeout", type=float, default=300)
    p.add_argument("--quick", action="store_true", help="batch 128, 2 steps: check the script, not the numbers")
    p.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    p.add_argument("--framework", default="jax", help=argparse.SUPPRESS)
    p.add_argument("--no-donation", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--pool", choices=("keras", "tiled"), default="keras", help=argparse.SUPPRESS)
    p.add_argument("--mark", help=argparse.SUPPRESS)
    p.add_argument("--save", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.steps, args.op_reps = 128, 2, 2
    if args.child:
        run_child(args)
    else:
        main_parent(args)


if __name__ == "__main__":
    main()
