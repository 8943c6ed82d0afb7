"""The bench report as rich tables: throughput with baselines and ratios, the drains' CPU by process,
Redis's CPU per task by operation, latency percentiles."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

Figures = dict[str, Any]

_ENQUEUE = (("client", "enqueue: client, 1 by 1", "TaskService.submit in a loop"),
            ("client_concurrent", "enqueue: client, {coroutines} coroutines", "TaskService.submit, each awaited"),
            ("http", "enqueue: HTTP, sequential", "httpx, one kept-alive connection"),
            ("http_concurrent", "enqueue: HTTP, {connections} connections", "minimal keep-alive client"),
            ("bulk", "enqueue: bulk x{chunk}", "TaskService.submit_bulk"))


def render(report: Figures, console: Console) -> None:
    console.print(_header(report), highlight=False)
    if any(report["enqueue"].values()) or report["drain"]:
        console.print(_throughput(report))
    if report["drain"]:
        console.print(_processes(report["drain"]))
    if report["redis_cpu"]:
        console.print(_redis(report["redis_cpu"]))
    for key, title in (("latency", "latency"), ("serve_latency", "latency under hexq serve")):
        lat = report[key]
        if lat is not None:
            where = {"in-process": "1 in-process worker", "processes": "1 worker process"}.get(
                lat["mode"], "POSTed to its API")
            console.print(_latency(lat, title))
            console.print(f"  {lat['submitted']} noop tasks at {lat['rate']:g}/s (achieved "
                          f"{_num(lat['achieved_rate'])}/s), {where}; from each task's created_at, started_at and "
                          f"finished_at{_redis_note(lat)}", highlight=False)
    for note in report["notes"]:
        console.print(f"note: {note}", highlight=False)


def _header(report: Figures) -> str:
    m = report["machine"]
    redis = f"  |  Redis {m['redis_version']}" if m.get("redis_version") else ""
    return (f"[bold]hexq bench[/bold]  {report['backend']}  |  {m['cpu_model']}, {m['cores']} cores, load "
            f"{m['load_average']:.2f} → {m.get('load_average_after', 0.0):.2f}, {m['implementation']} {m['python']}"
            f"{redis}  |  {report['seconds']:.1f} s{_spread(report)}")


def _spread(report: Figures) -> str:
    """--queues / --shards: where the bulk and drain phases put their tasks."""
    config, queues = report["config"], report.get("drain_queues") or []
    if config.get("shards", 1) > 1:
        return f"\nbulk and drain: hot queue {queues[0]} in {config['shards']} shards (--shards)"
    if config.get("queues", 1) > 1:
        return f"\nbulk and drain: round robin over {config['queues']} queues (--queues): {', '.join(queues)}"
    return ""


def _throughput(report: Figures) -> Table:
    table = Table(title="throughput (ratio: tasks/s over the baseline row just above)", title_justify="left")
    for name, justify in (("phase", "left"), ("tasks", "right"), ("seconds", "right"), ("tasks/s", "right"),
                          ("ratio", "right"), ("notes", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    base = report["baselines"] or {}
    config = report["config"]
    for key, label, how in _ENQUEUE:
        figures = report["enqueue"][key]
        if figures is None:
            continue
        _baseline_row(table, base.get(key))
        label = label.format(chunk=figures.get("chunk", ""), connections=figures.get("connections", ""),
                             coroutines=config["coroutines"])
        _row(table, label, figures, how + _http_cpu(figures) + _redis_note(figures))
    for i, d in enumerate(report["drain"] or []):
        if i == 0:
            _baseline_row(table, base.get("drain"))
        every = d["all_running"]
        how = (f"first start→last finish; all {d['workers']} at work: "
               f"{'-' if every is None else _num(every['per_second'])}/s; wall {d['wall_seconds']:.2f} s "
               f"({_num(d['wall_per_second'])}/s) with {d['startup_seconds']:.2f} s start-up; workers "
               f"{_num(d['cpu_us_per_task'])} µs CPU/task")
        _row(table, f"drain: {d['workers']} {_kind(d)} x {d['concurrency']}", d, how + _redis_note(d),
             tasks=d["drained"])
    return table


def _kind(d: Figures) -> str:
    if d["mode"] == "processes":
        return "process" if d["workers"] == 1 else "processes"
    return "in-process worker" if d["workers"] == 1 else "in-process workers"


def _baseline_row(table: Table, figures: Figures | None) -> None:
    if figures is None:
        return
    how = figures["what"] + _http_cpu(figures) + _redis_note(figures)
    if figures.get("cpu_us_per_task") is not None:
        how += f"; {figures['cpu_us_per_task']:,.0f} µs CPU/task"
    table.add_row("  [dim]baseline[/dim]", str(figures["tasks"]), f"{figures['seconds']:.2f}",
                  _num(figures["per_second"]), "", f"[dim]{how}[/dim]" + _partial(figures))


def _row(table: Table, label: str, figures: Figures, how: str, tasks: int | None = None) -> None:
    ratio = figures.get("ratio")
    table.add_row(label, str(figures["tasks"] if tasks is None else tasks), f"{figures['seconds']:.2f}",
                  _num(figures["per_second"]), "-" if ratio is None else f"{ratio:.2f}×", how + _partial(figures))


def _http_cpu(figures: Figures) -> str:
    if "server_cpu_us_per_task" not in figures:
        return ""
    return (f"; CPU µs/task: server {_num(figures['server_cpu_us_per_task'])}, "
            f"client {_num(figures['client_cpu_us_per_task'])} ({figures['server_loop']}, {figures['server_http']})")


def _redis_note(figures: Figures) -> str:
    redis = figures.get("redis")
    return "" if redis is None else f"; Redis {_num(redis['commands_us_per_task'])} µs/task"


def _processes(drains: list[Figures]) -> Table:
    table = Table(title="drain: CPU by process (cores: CPU s over the drain window; waited: s ready to run but "
                        "without a core)", title_justify="left")
    for name in ("drain", "process", "pid", "CPU s", "µs/task", "cores", "waited s", "CPU s with start-up",
                 "peak RSS MB"):
        table.add_column(name, justify="left" if name in ("drain", "process") else "right")
    for d in drains:
        drain = f"{d['workers']} x {d['concurrency']}"
        for p in d["processes"]:
            table.add_row(drain, p["name"], str(p["pid"] or "-"), f"{p['cpu_seconds']:.2f}",
                          _num(p["cpu_us_per_task"]), _cores(p), _two(p["cpu_wait_seconds"]),
                          f"{p['cpu_seconds_with_startup']:.2f}", f"{p['peak_rss_mb']:.1f}")
        extra = [("bench (polls progress)", d["bench_process"])] if d["mode"] == "processes" else []
        if d.get("redis_server") is not None:
            extra.append(("redis-server (main thread)", d["redis_server"]))
        extra += [(f"redis master {m['node']}", m) for m in d.get("redis_masters", [])]
        for name, p in extra:
            table.add_row(drain, name, "-", f"{p['cpu_seconds']:.2f}", _num(p["cpu_us_per_task"]), _cores(p),
                          _two(p.get("cpu_wait_seconds")), "-", "-")
        if d.get("redis_masters"):
            spread = d.get("redis_masters_max_over_min")
            table.add_row(drain, "redis masters: busiest / idlest CPU", "-", "-" if spread is None else f"{spread}×",
                          "-", "-", "-", "-", "-")
    return table


def _redis(rows: list[Figures]) -> Table:
    table = Table(title="Redis per task (µs: INFO commandstats, top-level commands; server CPU: INFO cpu)",
                  title_justify="left")
    for name in ("operation", "commands µs", "calls", "server CPU µs", "baseline commands µs", "baseline CPU µs"):
        table.add_column(name, justify="left" if name == "operation" else "right")
    for row in rows:
        base = row["baseline"] or {}
        table.add_row(row["operation"], _one(row["commands_us_per_task"]), _calls(row["calls_per_task"]),
                      _one(row["server_cpu_us_per_task"]), _one(base.get("commands_us_per_task")),
                      _one(base.get("server_cpu_us_per_task")))
    return table


def _latency(lat: Figures, title: str) -> Table:
    table = Table(title=f"{title} (ms){_partial(lat)}", title_justify="left")
    table.add_column("measure")
    for name in ("p50", "p95", "p99", "max", "mean"):
        table.add_column(name, justify="right")
    for label, key in (("submit (client call)", "submit_ms"), ("submit -> start", "submit_to_start_ms"),
                       ("submit -> finish", "submit_to_finish_ms")):
        table.add_row(label, *(_ms(lat[key][p]) for p in ("p50", "p95", "p99", "max", "mean")))
    return table


def _cores(p: Figures) -> str:
    return "-" if p.get("cores") is None else f"{p['cores']:.2f}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _one(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _two(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _calls(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _partial(figures: Figures) -> str:
    return "" if figures["complete"] else " [bold red](stopped at --timeout)[/bold red]"
