"""The driver kit: the generic parts of a load driver, so a new driver is its own load and
nothing else.

Agent side:

* :mod:`~agent.drivers.kit.supervisor`: starts load processes from a long-lived thread (they
  die with it: ``PR_SET_PDEATHSIG``), reads their channels, ends them on close;
* :mod:`~agent.drivers.kit.process_driver`: a :class:`~agent.drivers.base.Driver` whose load
  runs in such processes: readiness, T0, progress, stop, the merged report; a driver only says
  how to split its load into processes (:meth:`ProcessDriver.plan_load`).

Load-process side:

* :mod:`~agent.drivers.kit.child`: the process's entry (``PDEATHSIG``, its channel, the
  configure / ready / start / stop conversation) around a :class:`~agent.drivers.kit.child.Load`;
* :mod:`~agent.drivers.kit.timed`: the timed-load skeleton: wait for T0 (a stop may come
  first), the interval grid on T0 (warm-up then measure), interval rolling, the end;
* :mod:`~agent.drivers.kit.recorder`: one interval's latencies and counters, taken at its end
  and packed into a :class:`~agent.drivers.kit.counted.CountedInterval` (raw counts), which the
  agent's :class:`ProcessDriver` encodes into an :class:`~agent.drivers.intervals.IntervalData`.
"""
