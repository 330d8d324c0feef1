"""What the simulator charges for: the network, message handling, and the engine's own CPU time.

Defaults are figures measured on the 2-core development VM (docs/scale.md
says how). ``None`` for a CPU cost means "measure it live": the simulator
times the real Python call (``Master.handle``, ``Executor.run_one``) with
``perf_counter`` and charges that, so the master's cost per event, however it
grows with the number of workers, is the code's own, not a guess.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Costs"]


@dataclass(frozen=True)
class Costs:
    # One-way latency of a small message between two ranks. MPICH over shared memory here: ~3 us
    # for buffers, 4-5 us for pickled objects (../shared facts); a cluster's fabric: 1-2 us.
    latency_s: float = 5e-6
    # Bytes per second of a link (pickled bodies' sizes). 10 GB/s: a modest InfiniBand link.
    bandwidth_Bps: float = 10e9
    # CPU time to pickle and post one message, or to receive and unpickle one, on either side.
    # mpi4py isend + improbe/recv of a small pickled object here: ~5 us each side.
    message_cpu_s: float = 5e-6
    # The master's CPU per event it handles, on top of message_cpu_s. None: time Master.handle live.
    master_event_s: float | None = None
    # A worker's engine CPU per task (pop, fold, report bookkeeping), on top of the kernel's duration.
    # None: time Executor.run_one live (it runs the real kernel, whose own work is near zero here).
    worker_task_s: float | None = None
    # How often time is passed to the master when nothing else happens (the real driver ticks when
    # its mailbox is empty; 1 ms bounds how late a time-based decision is seen).
    tick_s: float = 1e-3

    def describe(self) -> str:
        def cpu(v):
            return "measured live" if v is None else f"{v * 1e6:g} us"
        return (f"latency {self.latency_s * 1e6:g} us, bandwidth {self.bandwidth_Bps / 1e9:g} GB/s, "
                f"message CPU {self.message_cpu_s * 1e6:g} us, master per event {cpu(self.master_event_s)}, "
                f"worker per task {cpu(self.worker_task_s)}")
