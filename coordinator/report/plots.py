"""The report's plots as plotly figure specifications (plain JSON data). Pure: no I/O.

Built as dictionaries rather than through plotly's Python figure classes: plotly.js draws them
the same, and a run of 20 clients by 300 intervals is specified in milliseconds.
"""

from __future__ import annotations

from typing import Any

from coordinator.report.data import HostCpu, Spectrum, Timeline

Figure = dict[str, Any]
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf")
SPECTRUM_TICKS = {1: "0%", 10: "90%", 100: "99%", 1000: "99.9%", 10_000: "99.99%",
                  100_000: "99.999%", 1_000_000: "99.9999%"}
"""1/(1-p) -> the percentile it stands for, the ticks of HdrHistogram's plots."""
USEC_PER_MS = 1000.0


def color(repetition: int) -> str:
    return COLORS[(repetition - 1) % len(COLORS)]


def spectrum_figure(spectrum: Spectrum) -> Figure:
    """Latency against percentile on a 1/(1-p) log axis: each repetition's merged line bold,
    each client's thin in the same colour."""
    traces = []
    for line in spectrum.curves:
        traces.append({
            "type": "scatter", "mode": "lines", "name": line.label,
            "legendgroup": f"rep {line.repetition}",
            "showlegend": line.merged,
            "x": [round(1.0 / (1.0 - p / 100.0), 6) for p in line.percentiles],
            "y": [v / USEC_PER_MS for v in line.latency_usec],
            "customdata": [round(p, 6) for p in line.percentiles],
            "hovertemplate": f"{line.label}<br>%{{customdata}} %%: %{{y}} ms<extra></extra>",
            "line": {"color": color(line.repetition), "width": 3 if line.merged else 1},
            "opacity": 1.0 if line.merged else 0.45,
        })
    return {"data": traces, "layout": {
        "title": {"text": f"latency by percentile: {spectrum.command}"},
        "xaxis": {"type": "log", "title": {"text": "percentile"},
                  "tickvals": list(SPECTRUM_TICKS), "ticktext": list(SPECTRUM_TICKS.values())},
        "yaxis": {"title": {"text": "latency (ms)"}, "rangemode": "tozero"},
        "legend": {"orientation": "h"}, "height": 420, "margin": {"t": 50},
    }}


def timeline_figure(timeline: Timeline) -> Figure:
    """Each client's throughput (top), p99 and max (middle) and longest wait for a reply
    (bottom) per interval; warm-up shaded, the common window between dashed lines. A stall
    shows as a drop to zero throughput and a spike of the longest wait, even with no reply."""
    traces = []
    for position, series in enumerate(timeline.series):
        hue = COLORS[position % len(COLORS)]
        common: dict[str, Any] = {"type": "scatter", "mode": "lines+markers", "x": series.seconds,
                  "legendgroup": series.host, "line": {"color": hue, "width": 1.5},
                  "marker": {"size": 3}}
        traces.append({**common, "name": series.host, "y": series.ops_per_sec,
                       "xaxis": "x", "yaxis": "y"})
        traces.append({**common, "name": f"{series.host} p99", "showlegend": False,
                       "y": [None if v is None else v / USEC_PER_MS for v in series.p99_usec],
                       "xaxis": "x2", "yaxis": "y2"})
        if any(v is not None for v in series.max_usec):
            traces.append({**common, "name": f"{series.host} max", "showlegend": False,
                           "mode": "lines", "line": {"color": hue, "width": 1, "dash": "dot"},
                           "y": [None if v is None else v / USEC_PER_MS
                                 for v in series.max_usec], "xaxis": "x2", "yaxis": "y2"})
        if any(v is not None for v in series.gap_usec):
            traces.append({**common, "name": f"{series.host} longest gap", "showlegend": False,
                           "y": [None if v is None else v / USEC_PER_MS
                                 for v in series.gap_usec], "xaxis": "x3", "yaxis": "y3"})
    shapes: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    if timeline.warmup_until_s is not None:
        shapes.append({"type": "rect", "xref": "x", "yref": "paper", "x0": 0,
                       "x1": timeline.warmup_until_s, "y0": 0, "y1": 1,
                       "fillcolor": "#999", "opacity": 0.15, "line": {"width": 0}})
        annotations.append({"x": timeline.warmup_until_s / 2, "y": 1.0, "xref": "x",
                            "yref": "paper", "text": "warm-up", "showarrow": False})
    if timeline.window_s is not None:
        for edge in timeline.window_s:
            shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": edge,
                           "x1": edge, "y0": 0, "y1": 1,
                           "line": {"dash": "dash", "color": "#333", "width": 1}})
        annotations.append({"x": sum(timeline.window_s) / 2, "y": 1.0, "xref": "x",
                            "yref": "paper", "text": "common window", "showarrow": False})
    return {"data": traces, "layout": {
        "title": {"text": f"repetition {timeline.repetition} over time, per client"},
        "xaxis": {"anchor": "y", "matches": "x3", "showticklabels": False},
        "xaxis2": {"anchor": "y2", "matches": "x3", "showticklabels": False},
        "xaxis3": {"anchor": "y3", "title": {"text": "seconds from T0"}},
        "yaxis": {"domain": [0.68, 1.0], "title": {"text": "replies/s"}, "rangemode": "tozero"},
        "yaxis2": {"domain": [0.34, 0.64], "title": {"text": "p99, max… (ms)"},
                   "rangemode": "tozero"},
        "yaxis3": {"domain": [0.0, 0.30], "title": {"text": "longest gap (ms)"},
                   "rangemode": "tozero"},
        "shapes": shapes, "annotations": annotations,
        "legend": {"orientation": "h"}, "height": 620, "margin": {"t": 50},
    }}


def cpu_figure(cpu: HostCpu) -> Figure:
    """Each host's CPU over a repetition: busy share of all cores (top); the hottest load
    process of each client and the server processes of each server host, % of one core
    (bottom), where a saturated single-threaded process shows even on a quiet host."""
    traces = []
    for position, line in enumerate(cpu.lines):
        hue = COLORS[position % len(COLORS)]
        common: dict[str, Any] = {"type": "scatter", "mode": "lines+markers", "x": line.seconds,
                                  "legendgroup": line.host, "marker": {"size": 3}}
        traces.append({**common, "name": f"{line.host} ({', '.join(line.roles)})",
                       "y": line.busy_percent, "line": {"color": hue, "width": 1.5},
                       "xaxis": "x", "yaxis": "y"})
        if any(v is not None for v in line.hottest_load_percent):
            names = "/".join(line.hottest_load_names)
            traces.append({**common, "name": f"{line.host} hottest load process ({names})",
                           "showlegend": False, "y": line.hottest_load_percent,
                           "line": {"color": hue, "width": 1.5, "dash": "dash"},
                           "xaxis": "x2", "yaxis": "y2"})
        for target, percent in line.server_percent.items():
            traces.append({**common, "name": f"{line.host} server processes"
                                             + (f" ({target})" if target else ""),
                           "showlegend": False, "y": percent,
                           "line": {"color": hue, "width": 1.5, "dash": "dot"},
                           "xaxis": "x2", "yaxis": "y2"})
    return {"data": traces, "layout": {
        "title": {"text": f"repetition {cpu.repetition}: CPU per host"},
        "xaxis": {"anchor": "y", "matches": "x2", "showticklabels": False},
        "xaxis2": {"anchor": "y2", "title": {"text": "seconds from T0 (interval end)"}},
        "yaxis": {"domain": [0.55, 1.0], "title": {"text": "host busy (% of all cores)"},
                  "rangemode": "tozero"},
        "yaxis2": {"domain": [0.0, 0.45],
                   "title": {"text": "process (% of one core)"}, "rangemode": "tozero"},
        "annotations": [{"x": 0, "y": 0.47, "xref": "paper", "yref": "paper",
                         "xanchor": "left", "showarrow": False,
                         "text": "dashed: hottest load process; dotted: server processes"}],
        "legend": {"orientation": "h"}, "height": 480, "margin": {"t": 50},
    }}
