"""A discrete-event simulator that runs the real scheduling code on simulated time.

The engine's ``Master``, ``WorkerProtocol`` and ``Executor`` run unchanged;
only time, the network and the kernels' durations are modelled
(``costs.Costs``). ``simulate(workload, workers, costs)`` returns a ``SimResult``.
Pure Python: no MPI, no threads (see docs/scale.md).
"""

from .costs import Costs
from .simulator import SimResult, simulate
from .workloads import WORKLOADS, Workload, make_workload

__all__ = ["Costs", "SimResult", "simulate", "Workload", "WORKLOADS", "make_workload"]
