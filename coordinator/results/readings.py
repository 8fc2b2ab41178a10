"""Sentences read from a results document, shared by the terminal view and the HTML report:
pure, so the report does not import the terminal's rendering (rich) to say the same thing."""

from __future__ import annotations

import statistics

from coordinator.core.baselines import round_trip_for
from coordinator.results.model import ResultsDocument


def beside_baseline_lines(document: ResultsDocument) -> list[str]:
    """Per client: its p50 (median across repetitions) beside the bare network's round trip
    to the target's host: how much of a request's latency the network alone costs."""
    target = document.target
    if target is None or not document.repetitions:
        return []
    lines = []
    hosts = sorted({agent.host for rep in document.repetitions for agent in rep.agents})
    for host in hosts:
        p50s = [agent.latency_usec.p50 for rep in document.repetitions for agent in rep.agents
                if agent.host == host]
        p50 = statistics.median(p50s)
        network = round_trip_for(document.baselines, host, target.address)
        if network is None:
            continue
        share = f" ({network / p50:.1%})" if p50 > 0 else ""
        lines.append(f"{host} → {target.server}: p50 {p50:,.0f} µs, of which the bare network "
                     f"round trip is {network:g} µs{share}")
    return lines
