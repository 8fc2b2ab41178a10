"""The agent's system metrics: what the host and its load did in every interval of a run.

A benchmark is trustworthy only when the clients were not the bottleneck, so every agent samples
its host on the run's interval grid (the load's T0 grid: interval ``i`` of the metrics is
interval ``i`` of the load) from ``start_metrics`` (at prepare) to ``metrics_report`` (at
collect):

* :mod:`agent.metrics.model`: the typed messages (the plan, the intervals, the report);
* :mod:`agent.metrics.procfs`: /proc read into typed snapshots of cumulative counters;
* :mod:`agent.metrics.cgroup`: the CPU quota and throttling counters of the agent's cgroup;
* :mod:`agent.metrics.server`: the server process found by its listening port, Redis INFO;
* :mod:`agent.metrics.deltas`: two snapshots into one interval's figures (pure);
* :mod:`agent.metrics.sampler`: the thread that snapshots at every interval boundary.

A metric that cannot be read is recorded as missing with its reason; sampling never fails the
load.
"""
