"""`pvision project ROOT`: the step time, speedup and efficiency of N workers on K nodes over a link,
calibrated from ROOT's runs (and linktest), written to ROOT/projection.json (docs/projection.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from parallel_vision.errors import ConfigError
from parallel_vision.projection import calibrate, links, mp_calibrate, records, root_inputs, store
from parallel_vision.projection.linktest import link_of
from parallel_vision.projection.model import Link


def _workers(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise ConfigError(f"--workers takes counts separated by commas, e.g. 2,4,8,16; got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"--workers takes positive counts, e.g. 2,4,8,16; got {text!r}")
    return values


def choose_link(inputs: root_inputs.Inputs, name: str | None, bandwidth_gbps: float | None,
                latency_us: float | None) -> Link:
    if bandwidth_gbps is not None or latency_us is not None:
        if name is not None:
            raise ConfigError("give --link or --bandwidth-gbps/--latency-us, not both")
        if bandwidth_gbps is None or latency_us is None:
            raise ConfigError("--bandwidth-gbps and --latency-us go together")
        return links.custom(bandwidth_gbps, latency_us)
    if name in (None, "linktest"):
        multi = next((r for r in inputs.linktests if int(r.get("nodes") or 1) > 1), None)
        record = multi or (inputs.linktests[0] if inputs.linktests else None)
        if record is None:
            raise ConfigError("no linktest.json in ROOT: give --link NAME (see --list-links) or "
                              "--bandwidth-gbps X --latency-us Y, or run `pvision linktest ROOT` first")
        return link_of(record)
    return links.preset(name)


def project(
    root: Path = typer.Argument(..., help="Results folder (a bench ROOT) with 1-worker runs to calibrate from."),
    workers: str = typer.Option("2,4,8,16,32", "--workers", "-n", help="Worker counts to project, e.g. 2,4,8,16."),
    nodes: int | None = typer.Option(None, "--nodes", help="Nodes the workers are spread over (capped at N)."),
    workers_per_node: int | None = typer.Option(None, "--workers-per-node", help="Workers per node instead of "
                                                "--nodes [default: 1, every hop crosses the link]."),
    link: str | None = typer.Option(None, "--link", help="Link between nodes: a preset (--list-links) or "
                                    "'linktest' (ROOT's linktest.json) [default: linktest when there is one]."),
    bandwidth_gbps: float | None = typer.Option(None, "--bandwidth-gbps", help="Link bandwidth each way, Gb/s."),
    latency_us: float | None = typer.Option(None, "--latency-us", help="Link one-hop latency, µs."),
    intra_link: str | None = typer.Option(None, "--intra-link", help="Link inside a node: a preset [default: "
                                          "ROOT's single-host linktest, else the --link]."),
    model: str | None = typer.Option(None, "--model", help="Which model's runs to calibrate from (when ROOT "
                                     "has several)."),
    framework: str = typer.Option("torch", "--framework", "-f", help="Whose runs calibrate the compute time."),
    threads: float | None = typer.Option(None, "--threads", help="Threads per worker of the runs to use "
                                         "[default: those of the DDP runs]."),
    per_worker_batch: int | None = typer.Option(None, "--per-worker-batch", help="Weak scaling at this "
                                                "per-worker batch [default: the largest 1-worker batch]."),
    global_batch: int | None = typer.Option(None, "--global-batch", help="Strong scaling: this global batch "
                                            "split over N workers."),
    contention: float | None = typer.Option(None, "--contention", help="Slowdown of co-located workers γ ≥ 1 "
                                            "[default: from ROOT's pair control, else 1]."),
    skew_ms: float | None = typer.Option(None, "--skew-ms", help="Rank skew added per step (ms) [default: "
                                         "measured from ROOT's DDP runs' per-rank step times, else 0]."),
    overlap: float | None = typer.Option(None, "--overlap", help="Share φ ∈ [0, 1] of the bucket model's "
                                         "overlap that happens [default: from ROOT's single-host DDP runs' "
                                         "comm-hook time, else 1]."),
    strategy: str | None = typer.Option(None, "--strategy", "-s", help="ddp, zero1, fsdp, pipeline or tensor: "
                                        "whose collectives to project [default: the strategy of ROOT's multi-worker "
                                        "runs, else ddp]."),
    microbatches: int | None = typer.Option(None, "--microbatches", help="pipeline: micro-batches per step "
                                            "[default: the pipeline runs', else 4 × stages]."),
    backend: str | None = typer.Option(None, "--backend", help="gloo or nccl: how the collectives run (gloo's "
                                       "reduce-scatter is an all-reduce) [default: the runs' backend]."),
    reshard_after_forward: bool | None = typer.Option(None, "--reshard-after-forward/--no-reshard-after-forward",
                                                      help="fsdp: blocks resharded after forward (an all-gather "
                                                      "again in backward) [default: the runs' setting, else yes]."),
    list_links: bool = typer.Option(False, "--list-links", help="List the link presets with their sources."),
) -> None:
    """Project step time, speedup and efficiency to N workers on K nodes; write ROOT/projection.json."""
    if list_links:
        _print_links()
        return
    records.check_strategy(strategy)
    records.check_backend(backend)
    if contention is not None and not contention >= 1:
        raise ConfigError(f"--contention must be ≥ 1; got {contention}")
    if overlap is not None and not 0 <= overlap <= 1:
        raise ConfigError(f"--overlap must be in [0, 1]; got {overlap}")
    for name, value in (("--nodes", nodes), ("--workers-per-node", workers_per_node),
                        ("--per-worker-batch", per_worker_batch), ("--global-batch", global_batch)):
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be positive; got {value}")
    inputs = root_inputs.load_inputs(root, model, framework, threads, strategy=strategy, reshard=reshard_after_forward,
                                   backend=backend)
    inter = choose_link(inputs, link, bandwidth_gbps, latency_us)
    if inputs.strategy in records.MODEL_PARALLEL:
        _project_model_parallel(inputs, _workers(workers), inter, per_worker_batch or global_batch, microbatches,
                                layout_given=nodes is not None or workers_per_node is not None)
        return
    if microbatches is not None:
        raise ConfigError("--microbatches is pipeline's: give --strategy pipeline")
    intra = links.preset(intra_link) if intra_link else None
    doc = calibrate.project(inputs, _workers(workers), inter, nodes=nodes, per_node=workers_per_node, intra=intra,
                            per_worker_batch=per_worker_batch, global_batch=global_batch, gamma=contention,
                            skew_s=None if skew_ms is None else skew_ms / 1e3, overlap_phi=overlap)
    path = store.write_projection(doc, root)
    print_projection(doc)
    typer.echo(f"projection: {path}")


def _project_model_parallel(inputs: root_inputs.Inputs, workers: list[int], inter: Link, batch: int | None,
                            microbatches: int | None, layout_given: bool) -> None:
    """pipeline or tensor (projection/mp_calibrate.py): every worker on its own node, the same global batch."""
    if layout_given:
        raise ConfigError(f"--nodes/--workers-per-node are not modelled for {inputs.strategy}: every worker is "
                          "on its own node over --link")
    if microbatches is not None and (inputs.strategy != "pipeline" or microbatches < 1):
        raise ConfigError("--microbatches takes a positive count, for --strategy pipeline only")
    doc = mp_calibrate.project(inputs, workers, inter, batch=batch, microbatches=microbatches)
    path = store.write_projection(doc, inputs.root)
    from rich.console import Console
    from rich.table import Table

    link = doc["link"]
    table = Table(title=f"Projected: {doc['model']} ({doc['framework']} {doc['strategy']}, {doc['backend']}), "
                        f"global batch {doc['global_batch']}, one worker per node, over {link['name']} "
                        f"({link['bandwidth_gbps']:.3g} Gb/s, {link['latency_us']:.3g} µs)")
    pipe = doc["strategy"] == "pipeline"
    for col in ("N", "step ms", "low–high ms", "exposed ms", *(("m", "bubble") if pipe else ()), "speedup", "eff."):
        table.add_column(col, justify="right", no_wrap=True)
    for r in doc["rows"]:
        table.add_row(str(r["workers"]), f"{r['step_time_s'] * 1e3:.1f}",
                      f"{r['step_time_low_s'] * 1e3:.1f}–{r['step_time_high_s'] * 1e3:.1f}",
                      f"{r['exposed_comm_s'] * 1e3:.1f}",
                      *((str(r["microbatches"]), f"{r['bubble']:.2f}") if pipe else ()),
                      f"{r['speedup']:.2f}", f"{r['efficiency'] * 100:.0f} %")
    console = Console()
    console.print(table)
    for r in doc["rows"] if pipe else ():
        console.print(f"stage time at {r['workers']} stages: {_ms(r['stage_s'])} per micro-batch, "
                      f"{r['stage_time_from']}")
    for note in doc["calibration"]["notes"]:
        console.print(f"note: {note}")
    for m in doc["measured"]:
        console.print(f"measured N = {m['workers']} over its linktest ({m['link']['bandwidth_gbps']:.3g} Gb/s): "
                      f"{_ms(m['measured_step_s'])} vs projected {_ms(m['projected_step_s'])} "
                      f"({m['error'] * 100:+.0f} %)")
    console.print(f"what would help: {doc['what_would_help']}")
    typer.echo(f"projection: {path}")


def print_projection(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    link = doc["link"]
    where = (f"{doc['layout']['nodes']} node(s)" if "nodes" in doc["layout"]
             else f"{doc['layout']['workers_per_node']} worker(s) per node")
    batch = (f"per-worker batch {doc['per_worker_batch']}" if doc["scaling"] == "weak"
             else f"global batch {doc['global_batch']}")
    strategy = doc.get("strategy", "ddp")
    if strategy == "fsdp":
        strategy += " (resharded after forward)" if doc["calibration"]["collectives"].get("reshard_after_forward") \
            else " (not resharded after forward)"
    table = Table(title=f"Projected: {doc['model']} ({doc['framework']} {strategy}, {doc.get('backend', 'gloo')}), "
                        f"{batch}, {where}, "
                        f"over {link['name']} ({link['bandwidth_gbps']:.3g} Gb/s, {link['latency_us']:.3g} µs)")
    for col in ("N", "nodes", "step ms", "low–high ms", "exposed ms", "speedup", "eff."):
        table.add_column(col, justify="right", no_wrap=True)
    for r in doc["rows"]:
        table.add_row(str(r["workers"]), str(r["nodes"]), f"{r['step_time_s'] * 1e3:.1f}",
                      f"{r['step_time_low_s'] * 1e3:.1f}–{r['step_time_high_s'] * 1e3:.1f}",
                      f"{r['exposed_comm_s'] * 1e3:.1f}",
                      f"{r['speedup']:.2f}", f"{r['efficiency'] * 100:.0f} %")
    console = Console()
    console.print(table)
    cal = doc["calibration"]
    comp = cal["compute"]
    console.print(f"calibration: T_c(b) = {comp['c0_s'] * 1e3:.2f} ms + b × {comp['c1_s_per_image'] * 1e3:.3f} ms "
                  f"({comp['kind']}, {len(comp['points'])} batch size(s), max residual "
                  f"{comp['max_rel_residual'] * 100:.0f} %); {len(cal['buckets'])} DDP bucket(s), "
                  f"{cal['gradient_bytes'] / 1e6:.1f} MB of gradients; "
                  f"contention γ = {cal['contention']['gamma']:.3f}; overlap φ = {cal['overlap']['phi']:.2f}")
    by_op = doc["rows"][-1].get("comm_by_op_s") or {}
    if any(by_op.values()):
        kinds = ", ".join(f"{op.replace('_', '-')} {_ms(t)}" for op, t in by_op.items() if t)
        note = (cal.get("comm_bytes") or {}).get("note", "the model's parameter bytes")
        console.print(f"collectives per step at N = {doc['rows'][-1]['workers']}, before overlap: {kinds} "
                      f"(bytes: {note})")
    skew = cal.get("skew") or {"skew_s": cal.get("skew_s", 0.0), "note": "given with --skew-ms"}
    console.print(f"rank skew: {skew['skew_s'] * 1e3:.2f} ms per step ({skew['note']})")
    if comp["kind"] == "proportional" and len(comp["points"]) == 1:
        console.print("note: one per-worker batch measured, so T_c(b) ∝ b is assumed: a small per-worker batch "
                      "that underuses a device is not caught (add 1-worker runs at other batch sizes).")
    for m in doc["measured"]:
        console.print(f"measured N = {m['workers']} on {m['nodes']} node(s) over its linktest "
                      f"({m['link']['bandwidth_gbps']:.3g} Gb/s): {_ms(m['measured_step_s'])} vs projected "
                      f"{_ms(m['projected_step_s'])} ({m['error'] * 100:+.0f} %)")
    console.print(f"what would help: {doc['what_would_help']}")


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 10 else f"{seconds:.2f} s"


def _print_links() -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Link presets (bandwidth each way; a linktest over the real link beats any preset)")
    for col in ("name", "link", "GB/s", "µs", "source"):
        table.add_column(col)
    for name, p in links.presets().items():
        table.add_row(name, p["label"], f"{p['bandwidth_GBps']:g}", f"{p['latency_us']:g}", p["source"])
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("project")(project)
