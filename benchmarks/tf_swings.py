"""Why do TensorFlow epochs swing between ~11.5 s and ~20 s on the same work? Instrumented plain Keras fit.

Each variant trains the paper CNN with plain `model.fit` (as benchmarks/baselines/keras_fit.py) in a
fresh process and records, per epoch: wall time, the process's user and system CPU seconds, minor
page faults, voluntary/involuntary context switches, Python GC passes and time, the machine's steal
time (/proc/stat), and every step's wall time. A slow epoch whose CPU time rises with it did more
work (page faults: sys time and minflt; GC: gc_s); one whose CPU time does not rise waited.

Variants (alternating over --repeats rounds): `default`; `malloc_tuned` (the glibc settings our
PyTorch engine uses: no mmap for big blocks, no trimming); `gc_off` (gc.freeze + disable);
`inter_op_1` (one inter-op thread); `onednn_off` (TF_ENABLE_ONEDNN_OPTS=0); `tf_data` (the arrays fed as
our TF engine feeds them: one tf.data pipeline, shuffle(n, reshuffle_each_iteration) → batch → prefetch,
instead of Keras' array adapter); `tf_data_repeat` (that pipeline repeated, with `steps_per_epoch`, so one
iterator serves every epoch).

Usage:  python benchmarks/tf_swings.py [--epochs 10] [--limit-train 8192] [--repeats 1] [--only default ...]
Writes benchmarks/results/tf_swings-<date>.json; prints a table last.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    "malloc_tuned": {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**36)},
    "gc_off": {"SWINGS_GC_OFF": "1"},
    "inter_op_1": {"SWINGS_INTER_OP": "1"},
    "onednn_off": {"TF_ENABLE_ONEDNN_OPTS": "0"},
    "tf_data": {"SWINGS_TF_DATA": "1"},
    "tf_data_repeat": {"SWINGS_TF_DATA": "repeat"},
}


def _steal_ticks() -> int:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return int(fields[8]) if len(fields) > 8 else 0


def _worker(epochs: int, limit_train: int, batch: int, threads: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    from parallel_vision.data import load
    from parallel_vision.models.keras_cnn import build_keras_cnn

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    if os.environ.get("SWINGS_INTER_OP"):
        tf.config.threading.set_inter_op_parallelism_threads(int(os.environ["SWINGS_INTER_OP"]))
    keras.utils.set_random_seed(0)
    x, y = load("mnist", "train", os.environ.get("PVISION_DATA_DIR"))
    x = np.expand_dims(x[:limit_train].astype("float32") / 255, -1)
    y = y[:limit_train]
    model = build_keras_cnn()
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    gc_time = [0.0, 0]
    gc_start = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_start[0] = time.perf_counter()
        else:
            gc_time[0] += time.perf_counter() - gc_start[0]
            gc_time[1] += 1

    gc.callbacks.append(on_gc)
    if os.environ.get("SWINGS_GC_OFF"):
        gc.freeze()
        gc.disable()
    ticks = os.sysconf("SC_CLK_TCK")
    epochs_out: list[dict[str, Any]] = []

    class Probe(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):  # type: ignore[no-untyped-def]
            self.r0, self.t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            self.gc0, self.steal0, self.steps, self.marks = tuple(gc_time), _steal_ticks(), [], []

        def on_train_batch_begin(self, batch, logs=None):  # type: ignore[no-untyped-def]
            self.s0 = time.perf_counter()
            self.marks.append(("begin", self.s0 - self.t0))

        def on_train_batch_end(self, batch, logs=None):  # type: ignore[no-untyped-def]
            now = time.perf_counter()
            self.steps.append(round(now - self.s0, 3))
            self.marks.append(("end", now - self.t0))

        def on_epoch_end(self, epoch, logs=None):  # type: ignore[no-untyped-def]
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            epoch_s = time.perf_counter() - self.t0
            begins = [t for kind, t in self.marks if kind == "begin"]
            ends = [t for kind, t in self.marks if kind == "end"]
            epochs_out.append({
                "epoch_s": epoch_s,
                # where the time outside the steps is: before the first, between them, after the last
                "before_first_step_s": begins[0] if begins else None,
                "between_steps_s": sum(b - e for b, e in zip(begins[1:], ends[:-1], strict=False)),
                "after_last_step_s": epoch_s - ends[-1] if ends else None,
                "user_s": r1.ru_utime - self.r0.ru_utime, "sys_s": r1.ru_stime - self.r0.ru_stime,
                "minflt": r1.ru_minflt - self.r0.ru_minflt,
                "nvcsw": r1.ru_nvcsw - self.r0.ru_nvcsw, "nivcsw": r1.ru_nivcsw - self.r0.ru_nivcsw,
                "gc_s": gc_time[0] - self.gc0[0], "gc_passes": gc_time[1] - self.gc0[1],
                "steal_s": (_steal_ticks() - self.steal0) / ticks, "step_s": self.steps,
                "max_rss_mib": r1.ru_maxrss / 1024,
            })

    if os.environ.get("SWINGS_TF_DATA"):
        data = (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0, reshuffle_each_iteration=True)
                .batch(batch, drop_remainder=True))
        steps = None
        if os.environ["SWINGS_TF_DATA"] == "repeat":
            data, steps = data.repeat(), len(x) // batch
        model.fit(data.prefetch(tf.data.AUTOTUNE), epochs=epochs, steps_per_epoch=steps, verbose=0,
                  callbacks=[Probe()])
    else:
        model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, callbacks=[Probe()])
    print(json.dumps({"epochs": epochs_out, "tf_version": tf.__version__}))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_worker":
        _worker(*(int(v) for v in sys.argv[2:6]))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--limit-train", type=int, default=8192)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--only", nargs="+", choices=list(VARIANTS))
    p.add_argument("--no-wait", action="store_true")
    args = p.parse_args()
    record = C.header("tf_swings", args)
    names = args.only or list(VARIANTS)
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    first = True
    for rnd in range(args.repeats):
        for name in names if rnd % 2 == 0 else list(reversed(names)):
            env = dict(C.baseline_env(args.threads), **VARIANTS[name])
            cmd = [__file__, "--_worker", str(args.epochs), str(args.limit_train), str(args.batch_size),
                   str(args.threads)]
            out, state = C.measured(lambda c=cmd, e=env: C.run_json_subprocess(c, env=e), first=first,
                                    enabled=not args.no_wait)
            first = False
            out["machine"], out["round"] = state, rnd + 1
            runs[name].append(out)
            times = [round(e["epoch_s"], 1) for e in out["epochs"]]
            print(f"  round {rnd + 1}: {name:13s} epochs {times} (load1 {state['load1']})", flush=True)
    rows = []
    for name in names:
        for r in runs[name]:
            steady = r["epochs"][1:]
            fast = min(e["epoch_s"] for e in steady)
            for i, e in enumerate(r["epochs"]):
                rows.append([name, r["round"], i + 1, f"{e['epoch_s']:.1f}", f"{e['epoch_s'] / fast:.2f}",
                             f"{e['user_s']:.1f}", f"{e['sys_s']:.1f}", e["minflt"], e["nivcsw"],
                             f"{e['gc_s']:.2f}", f"{e['steal_s']:.1f}",
                             f"{statistics.median(e['step_s']):.2f}/{max(e['step_s']):.2f}",
                             f"{e['before_first_step_s']:.1f}/{e['between_steps_s']:.1f}/{e['after_last_step_s']:.1f}"])
    record["runs"] = runs
    path = C.write_json("tf_swings", record)
    C.print_table(f"Plain Keras fit, {args.limit_train} images, batch {args.batch_size}, {args.threads} threads",
                  ["variant", "round", "epoch", "wall s", "x fastest", "user s", "sys s", "minor faults",
                   "invol. csw", "gc s", "steal s", "step s median/max", "outside steps: before/between/after"],
                  rows)
    print(f"written {path.relative_to(C.ROOT)}")


if __name__ == "__main__":
    main()
