"""Where, with what and by which bench the runs were measured: the environment table and the bench's
own description of what it was asked to run."""

from __future__ import annotations

from typing import Any

from parallel_vision.report.data import ReportData
from parallel_vision.report.tables import Table


def environment_table(data: ReportData) -> Table:
    env = data.environment
    rows = [
        ["Host", env["host"]],
        ["CPU", env["cpu_model"]],
        ["CPU features", env["cpu_flags"]],
        ["Cores (logical / usable)", f"{env['logical_cores']} / {env['usable_cores']}"],
        ["Memory (GiB)", env["memory_gib"]],
        ["Devices", "; ".join(f"{k}: {v}" for k, v in env["devices"].items()) or "—"],
        ["Platform", env["platform"]],
        ["Python", env["python"]],
        ["Packages", ", ".join(f"{k} {v}" for k, v in env["packages"].items())],
        ["Code version(s)", ", ".join(f"{k} ({v} run{'s' if v != 1 else ''})"
                                      for k, v in env["code_versions"].items())],
        ["Commit(s)", ", ".join(env["commits"])],
        ["Runs", f"{env['runs']} complete runs of {env['configurations']} configurations; repeats per "
                 f"configuration: {', '.join(map(str, env['repeats']))}"],
        ["Dataset", ", ".join(env["datasets"])],
        ["Run dates (UTC)", f"{env['first_run']} → {env['last_run']}"],
        ["Report generated (UTC)", data.generated_at],
    ]
    m = data.manifest
    if m:
        # Every bench that wrote into this ROOT (the latest last): what was asked, when, how it ended.
        benches = [b for b in (m.get("history") or []) if b.get("started_at") != m.get("started_at")]
        benches.append(m)
        for n, b in enumerate(benches[-5:], 1):
            spec = b.get("spec") or {}
            waited = f", {b['waited_s']:.0f} s of it waiting for a quiet machine" if b.get("waited_s") else ""
            waited += idle_policy_text(b.get("idle_policy"))
            rows.insert(n - 1, [
                f"Bench {n}" if len(benches) > 1 else "Bench",
                f"preset {spec.get('preset') or 'custom'} ({bench_spec_text(spec)}); {b.get('status')}, started "
                f"{b.get('started_at')}, finished {b.get('finished_at') or '—'}"
                + (f", {b['seconds']:.0f} s{waited}" if b.get("seconds") else ""),
            ])
    return Table(["", ""], rows, [], "ll")


def idle_policy_text(policy: dict[str, Any] | None) -> str:
    """How the bench treated a busy machine (benches before the policy was recorded say nothing)."""
    if not policy:
        return ""
    if policy.get("mode") == "strict":
        return f"; strict quiet-machine mode (waited up to {policy.get('wait_s', 0):.0f} s before each run)"
    return (f"; bounded quiet-machine mode (waited at most {policy.get('wait_s', 0):.0f} s in all; runs measured"
            " while other processes used CPU are flagged)")


def presets_text(data: ReportData) -> str:
    """The presets of every bench that wrote into this ROOT, oldest first ('paper + custom')."""
    m = data.manifest or {}
    benches = [b for b in (m.get("history") or []) if b.get("started_at") != m.get("started_at")] + [m]
    names = [((b.get("spec") or {}).get("preset") or "custom") for b in benches if b]
    unique = list(dict.fromkeys(names))
    return " + ".join(unique) if unique else "—"


def bench_spec_text(spec: dict[str, Any]) -> str:
    parts = [
        "frameworks " + ", ".join(spec.get("frameworks") or []),
        "workers " + ", ".join(map(str, spec.get("workers") or [])),
        f"{spec.get('scaling')} scaling",
        f"batch {spec.get('batch_size')}" + (" per worker" if spec.get("scaling") == "weak" else ""),
        f"{spec.get('epochs')} epochs",
        f"train {spec.get('limit_train') or 'all'} / test {spec.get('limit_test') or 'all'} images",
        f"{spec.get('repeats')} repeat(s)",
    ]
    if spec.get("strategies"):
        parts.append("strategies " + ", ".join(spec["strategies"]))
    if spec.get("threads"):
        parts.append(f"{spec['threads']} threads per worker")
    if spec.get("reference"):
        parts.append("all-cores single-process reference")
    if spec.get("as_published"):
        parts.append("as published (SGD lr 0.01 momentum 0.9 for PyTorch single and DataParallel)")
    if spec.get("init") and spec["init"] != "framework":
        parts.append(f"--init {spec['init']}")
    return "; ".join(parts)
