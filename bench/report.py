"""Write a run's results: results.json, results.md (the table with ratios) and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .runner import medians
from .scenarios import SCENARIOS, Metric, scenario
from .servers import PEER_EXCLUDE

MiB = 1024 * 1024


def write_json(path: Path, meta: dict[str, Any], records: list[dict[str, Any]]) -> None:
    data = {"meta": meta, "summary": medians(records), "runs": records}
    path.write_text(json.dumps(data, indent=1, default=str) + "\n")


def best_peer(metric: Metric, by_server: dict[str, dict[str, float]]) -> tuple[str, float] | None:
    """The best peer's (name, value) for this metric: fastws and the raw TCP echo excluded."""
    peers = [
        (srv, m[metric.key])
        for srv, m in by_server.items()
        if srv not in PEER_EXCLUDE and m.get(metric.key) is not None
    ]
    if not peers:
        return None
    pick = max if metric.higher_is_better else min
    return pick(peers, key=lambda p: p[1])


def _cell(metric: Metric, value: float | None, best: float | None) -> str:
    if value is None:
        return "-"
    text = metric.fmt.format(value)
    if best:
        text += f" ({value / best:.2f}x)"
    return text


def markdown(meta: dict[str, Any], records: list[dict[str, Any]], servers: list[str]) -> str:
    summary = medians(records)
    lines = [
        f"# fastws end-to-end benchmarks, {meta['date']}",
        "",
        f"Machine: {meta['machine']}. Servers pinned to CPU {_cpus(meta['server_cpus'])}, the"
        f" load generator (C, epoll, {meta['client_procs']} process(es)) to CPU"
        f" {_cpus(meta['client_cpus'])}. Load average {meta['loadavg_start']} at the start,"
        f" {meta['loadavg_end']} at the end.",
        "",
        f"Command: `{meta['command']}` (fastws at {meta.get('commit') or 'an unknown commit'})",
        "",
        f"Each figure is the median of the successful runs among {meta['options']['repeat']} of"
        f" {meta['options']['duration']} s (after {meta['options']['warmup']} s of warm-up);"
        " every echo was verified byte for byte. In brackets: the figure divided by the best"
        " peer's (peers: every server but fastws and raw-tcp); ↑ higher is better, ↓ lower is"
        " better, so fastws wants ratios above 1 on ↑ rows and below 1 on ↓ rows.",
        "",
    ]
    workers = meta["options"].get("workers", 1)
    if workers > 1:
        lines += [
            f"**{workers} server processes**: fastws `--workers {workers}`; picows, aiohttp"
            f" and raw-tcp as {workers} processes, each its own server on its own SO_REUSEPORT"
            " socket (bench/servers/multiproc.py, bench/c/echo.c); the ASGI servers with their own `--workers"
            f" {workers}` (fastws's master, uvicorn's supervisor, Hypercorn, Granian: a parent"
            " and its workers); servers without a multi-process mode: n/a. Server"
            " and generator share the cpus; per-server-CPU figures sum the server's processes.",
            "",
        ]
    shapes = meta["options"].get("client_shapes") or {}
    if set(shapes) - {"default"}:
        lines += ["Client shapes (`KEY@SHAPE` rows; plain keys: default):", ""]
        lines += [f"- `{name}`: {text}" for name, text in shapes.items()]
        lines.append("")
    head = "| scenario | figure | " + " | ".join(servers) + " |"
    lines += [head, "|" + "---|" * (len(servers) + 2)]
    keys = list(dict.fromkeys(r["scenario"] for r in records))  # run order: a, a@shape, b, ...
    for key in keys:
        scn = scenario(key)
        by = summary.get(key, {})
        title = scn.describe()
        if scn.idle:
            title = f"f) {meta['options']['idle_conns']:,} idle connections"
        shown = [m for m in scn.metrics if any(m.key in v for v in by.values())] or scn.metrics[:1]
        for i, metric in enumerate(shown):
            best = best_peer(metric, by)
            cells = []
            for srv in servers:
                rec = _first(records, key, srv)
                if rec is not None and rec.get("skipped"):
                    cells.append("n/a")
                elif srv not in by:
                    cells.append("FAILED" if rec is not None else "")
                else:
                    cells.append(_cell(metric, by[srv].get(metric.key), best[1] if best else None))
            label = f"{metric.label} {metric.arrow}"
            lines.append(f"| {title if i == 0 else ''} | {label} | " + " | ".join(cells) + " |")
    lines += ["", *_limit_section(summary), "", *_generator_section(summary, servers)]
    failures = [r for r in records if not r["ok"] and not r.get("skipped")]
    if failures:
        lines += ["", "## Failed runs", ""]
        lines += [
            f"- {r['scenario']}/{r['server']} (run {r['repeat']}): {r['error']}" for r in failures
        ]
    plots = meta.get("plots") or []
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _cpus(cpus: list[int]) -> str:
    return ",".join(map(str, cpus))


def _first(records: list[dict[str, Any]], scenario: str, server: str) -> dict[str, Any] | None:
    return next((r for r in records if r["scenario"] == scenario and r["server"] == server), None)


def _limit_section(summary: dict[str, Any]) -> list[str]:
    """fastws as a fraction of the C TCP echo, where both ran."""
    rows = []
    for key in ("a", "b", "c", "d", "e", "g", "h"):
        by = summary.get(key, {})
        if "fastws" not in by or "raw-tcp" not in by:
            continue
        metric = "mb_per_s" if key in ("d", "e") else "msgs_per_s"
        f, r = by["fastws"].get(metric), by["raw-tcp"].get(metric)
        if f and r:
            rows.append(f"| {SCENARIOS[key].describe()} | {f:,.0f} | {r:,.0f} | {f / r:.0%} |")
    if not rows:
        return []
    return [
        "## fastws against the physical limit (C TCP echo, same frames)",
        "",
        "| scenario | fastws | raw-tcp | fastws / raw-tcp |",
        "|---|---|---|---|",
        *rows,
    ]


def _generator_section(summary: dict[str, Any], servers: list[str]) -> list[str]:
    """Is the load generator the bottleneck? Its CPU share, and the server's, per run."""
    rows = []
    for key in ("a", "b", "c", "d", "e", "f", "g", "h"):
        by = summary.get(key, {})
        if not by:
            continue
        cells = []
        for srv in servers:
            m = by.get(srv)
            if not m or m.get("client_cpu") is None:
                cells.append("")
                continue
            scpu = m.get("server_cpu")
            cells.append(
                f"{m['client_cpu']:.0%} / {scpu:.0%}"
                if scpu is not None
                else f"{m['client_cpu']:.0%}"
            )
        rows.append(f"| {key} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    lines = [
        "## Load generator check",
        "",
        "CPU used by the load generator / by the server during the measured window, as a share"
        " of one core (f: while the connections were being opened). The generator is not the bottleneck when it stays below 100 % of"
        " its core(s) while the server is near 100 %, and when it drives the raw TCP echo"
        " faster than any WebSocket server.",
        "",
        "| scenario | " + " | ".join(servers) + " |",
        "|" + "---|" * (len(servers) + 1),
        *rows,
    ]
    fastest = {
        key: max(
            (
                (srv, m.get("msgs_per_s") or 0)
                for srv, m in summary.get(key, {}).items()
                if srv != "raw-tcp"
            ),
            key=lambda p: p[1],
            default=None,
        )
        for key in ("a", "b", "c", "g", "h")
    }
    for key, best in fastest.items():
        raw = summary.get(key, {}).get("raw-tcp", {}).get("msgs_per_s")
        if best and raw:
            lines.append("")
            lines.append(
                f"Scenario {key}: the generator drove the raw TCP echo at {raw:,.0f} msgs/s,"
                f" {raw / best[1]:.1f}x the fastest WebSocket server ({best[0]}, {best[1]:,.0f})."
                + (
                    " Each echo was inflated and compared with its payload, as a server's"
                    " compressed echo is."
                    if SCENARIOS[key].deflate
                    else ""
                )
                + (
                    " With one message in flight per connection this rate is bound by round"
                    " trips (scheduling on a busy machine), not by either side's CPU: the CPU"
                    " shares above are the check here."
                    if SCENARIOS[key].depth == 1
                    else ""
                )
            )
    return lines


# -- plots -------------------------------------------------------------------------------------


def plots(outdir: Path, records: list[dict[str, Any]], servers: list[str]) -> list[str]:
    """PNG plots; returns their file names ([] when matplotlib is not installed)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    summary = medians(records)
    made: list[str] = []
    colors = {s: f"C{i}" for i, s in enumerate(servers)}

    def bars(
        name: str,
        title: str,
        groups: list[tuple[str, str, str]],
        ylabel: str,
        log: bool,
        shown: list[str] = servers,
    ) -> None:
        """groups: (label, scenario, metric key); one bar per server in each group."""
        present = [g for g in groups if summary.get(g[1])]
        if not present:
            return
        fig, ax = plt.subplots(figsize=(9, 4.5))
        width = 0.8 / max(1, len(shown))
        for i, srv in enumerate(shown):
            xs, ys = [], []
            for j, (_, scn, key) in enumerate(present):
                value = summary.get(scn, {}).get(srv, {}).get(key)
                if value:
                    xs.append(j + (i - (len(shown) - 1) / 2) * width)
                    ys.append(value)
            if xs:
                ax.bar(xs, ys, width, label=srv, color=colors[srv])
        ax.set_xticks(range(len(present)), [g[0] for g in present])
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        if log:
            ax.set_yscale("log")
        ax.legend(fontsize="small")
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(outdir / name, dpi=110)
        plt.close(fig)
        made.append(name)

    bars(
        "msgs_per_s.png",
        "Echoed messages per second (64 B)",
        [
            ("a) 1 conn x 1", "a", "msgs_per_s"),
            ("b) 100 conns x 1", "b", "msgs_per_s"),
            ("c) 10 conns x 100", "c", "msgs_per_s"),
        ],
        "msgs/s (log)",
        True,
    )
    bars(
        "latency.png",
        "Round-trip latency, a) 64 B text, 1 conn, 1 in flight",
        [("p50", "a", "p50_us"), ("p99", "a", "p99_us"), ("p99.9", "a", "p99_9_us")],
        "µs (log)",
        True,
    )
    bars(
        "compressed.png",
        "Compressed echo (1 KiB JSON, permessage-deflate, 10 conns x 10 in flight)",
        [
            ("g) msgs/s", "g", "msgs_per_s"),
            ("g) per server CPU-s", "g", "msgs_per_cpu_s"),
            ("h) msgs/s", "h", "msgs_per_s"),
            ("h) per server CPU-s", "h", "msgs_per_cpu_s"),
        ],
        "messages",
        False,
        # without the raw TCP echo: there it is the generator's own limit (the report says)
        [s for s in servers if s != "raw-tcp"],
    )
    # MB/s against message size: c (64 B), d (1 MiB), e (16 MiB)
    sizes = [("c", 64), ("d", MiB), ("e", 16 * MiB)]
    if any(summary.get(s) for s, _ in sizes):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for srv in servers:
            pts = [
                (size, summary[s][srv]["mb_per_s"])
                for s, size in sizes
                if summary.get(s, {}).get(srv, {}).get("mb_per_s")
            ]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=srv, color=colors[srv])
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(
            [64, MiB, 16 * MiB], ["64 B\n(c: 10x100)", "1 MiB\n(d: 4x1)", "16 MiB\n(e: 1x1)"]
        )
        ax.set_ylabel("MB/s of payload echoed (log)")
        ax.set_title("Throughput against message size")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(outdir / "mb_per_s.png", dpi=110)
        plt.close(fig)
        made.append("mb_per_s.png")
    # RSS against idle connections (scenario f, first successful run per server)
    idle: dict[str, dict[str, Any]] = {}
    for r in records:
        if r["scenario"] == "f" and r["ok"] and r.get("idle_points"):
            idle.setdefault(r["server"], r)
    if idle:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for srv in servers:
            if srv not in idle:
                continue
            rec = idle[srv]
            xs = [0] + [p["conns"] for p in rec["idle_points"]]
            ys = [rec["server_stats"]["rss_base"] / MiB] + [
                p["rss"] / MiB for p in rec["idle_points"]
            ]
            ax.plot(xs, ys, marker="o", label=srv, color=colors[srv])
        ax.set_xlabel("open idle connections")
        ax.set_ylabel("server RSS (MiB)")
        ax.set_title("Server memory against idle connections")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(outdir / "rss.png", dpi=110)
        plt.close(fig)
        made.append("rss.png")
    return made
