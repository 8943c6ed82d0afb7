"""The bench report as rich tables: throughput, the drain's processes, latency percentiles."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def render(report: dict[str, Any], console: Console) -> None:
    m = report["machine"]
    console.print(f"[bold]hexq bench[/bold]  {report['backend']}  |  {m['cpu_model']}, {m['cores']} cores, "
                  f"load {m['load_average']:.2f}, {m['implementation']} {m['python']}  |  {report['seconds']:.1f} s",
                  highlight=False)
    console.print(_throughput(report))
    if report["drain"] is not None:
        console.print(_processes(report["drain"]))
    if report["latency"] is not None:
        lat = report["latency"]
        where = "in-process worker" if lat["mode"] == "in-process" else "worker process"
        console.print(_latency(lat))
        achieved = _num(lat["achieved_rate"])
        console.print(f"  {lat['submitted']} noop tasks at {lat['rate']:g}/s (achieved {achieved}/s), 1 {where}; "
                      "from each task's created_at, started_at and finished_at", highlight=False)
    for note in report["notes"]:
        console.print(f"note: {note}", highlight=False)


def _throughput(report: dict[str, Any]) -> Table:
    table = Table(title="throughput", title_justify="left")
    for name, justify in (("phase", "left"), ("tasks", "right"), ("seconds", "right"), ("tasks/s", "right"),
                          ("notes", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    e = report["enqueue"]
    rows = (("enqueue: client, 1 by 1", e["client"], "TaskService.submit in a loop"),
            ("enqueue: HTTP, sequential", e["http"], "httpx, one kept-alive connection"),
            (f"enqueue: HTTP, {(e['http_concurrent'] or {}).get('connections', '')} connections",
             e["http_concurrent"], "minimal keep-alive client"),
            (f"enqueue: bulk x{(e['bulk'] or {}).get('chunk', '')}", e["bulk"], "TaskService.submit_bulk"))
    for label, figures, how in rows:
        if figures is not None:
            if "server_cpu_us_per_task" in figures:
                how += (f"; CPU µs/task: server {_num(figures['server_cpu_us_per_task'])}, "
                        f"client {_num(figures['client_cpu_us_per_task'])}")
            table.add_row(label, str(figures["tasks"]), f"{figures['seconds']:.2f}", _num(figures["per_second"]),
                          how + _partial(figures))
    d = report["drain"]
    if d is not None:
        how = (f"first start→last finish; wall {d['wall_seconds']:.2f} s ({_num(d['wall_per_second'])}/s) with "
               f"{d['startup_seconds']:.2f} s start-up; {_num(d['cpu_us_per_task'])} µs CPU/task")
        kind = "processes" if d["mode"] == "processes" else "in-process workers"
        table.add_row(f"drain: {d['workers']} {kind} x {d['concurrency']}", str(d["drained"]), f"{d['seconds']:.2f}",
                      _num(d["per_second"]), how + _partial(d))
    return table


def _processes(d: dict[str, Any]) -> Table:
    table = Table(title="drain: worker CPU and memory", title_justify="left")
    for name in ("process", "pid", "CPU s (drain)", "CPU s (with start-up)", "peak RSS MB"):
        table.add_column(name, justify="left" if name == "process" else "right")
    for p in d["processes"]:
        table.add_row(p["name"], str(p["pid"] or "-"), f"{p['cpu_seconds']:.2f}",
                      f"{p['cpu_seconds_with_startup']:.2f}", f"{p['peak_rss_mb']:.1f}")
    return table


def _latency(lat: dict[str, Any]) -> Table:
    table = Table(title=f"latency (ms){_partial(lat)}", title_justify="left")
    table.add_column("measure")
    for name in ("p50", "p95", "p99", "max", "mean"):
        table.add_column(name, justify="right")
    for label, key in (("submit (client call)", "submit_ms"), ("submit -> start", "submit_to_start_ms"),
                       ("submit -> finish", "submit_to_finish_ms")):
        table.add_row(label, *(_ms(lat[key][p]) for p in ("p50", "p95", "p99", "max", "mean")))
    return table


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _partial(figures: dict[str, Any]) -> str:
    return "" if figures["complete"] else " [bold red](stopped at --timeout)[/bold red]"
