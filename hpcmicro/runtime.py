"""Runtime: the SPMD facade. Enter the communicator, agree on each call, run it, deliver the result.

The scheduling itself is the engine's (``engine/``), run by the drivers
(``driver/``): over MPI between ranks, or over in-process queues when the job
has one rank. Both are the same master and worker protocols, so a one-rank run
checkpoints, resumes, preempts and fails exactly as a multi-rank one.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
import traceback
from typing import Any

from .constants import MASTER
from .driver.call import CallSpec
from .driver.inprocess import run_inprocess
from .driver.spmd import conclude, result_lost, run_group_rank, run_master_rank, run_worker_rank
from .engine.combine import resolve_op, skip_aware
from .engine.cut import CallState
from .engine.group import auto_group_size, group_masters, plan_groups
from .engine.tasks import DECOMPOSITIONS, TaskSource, short_repr
from .errors import InvalidCall, Preempted
from .codehash import code_parts
from .identity import describe_callable, require_checkpoint_safe
from .io.checkpoint import CheckpointError, job_identity
from .io.session import CheckpointSession
from .mpi import signals, threads
from .mpi import ulfm as faults
from .mpi.collectives import deliver, wait_for_all
from .mpi.rounds import agree_on_call
from .mpi.devices import CPU, node_of_ranks, select_backend
from .observe.metrics import write_chrome_trace
from .observe.progress import Progress
from .observe.stats import CallStats
from .options import HELP, Options

__all__ = ["Runtime"]


class Runtime:
    """Every rank enters; rank 0 is the master, the others run tasks.

    ``comm`` defaults to ``MPI.COMM_WORLD``; the runtime works on a private
    duplicate so its messages never meet the application's. Options are the
    fields of ``hpcmicro.options.Options`` (pass ``options=`` or keywords, or
    both: keywords win); ``Runtime.__init__.__doc__`` lists them.

    With one rank (plain ``python``), the master and ``inprocess_workers``
    workers run on threads of this process.
    """

    def __init__(self, comm=None, options: Options | None = None, **settings):
        unknown = sorted(set(settings) - set(Options.field_names()))
        if unknown:
            raise InvalidCall(f"unknown Runtime option(s) {', '.join(unknown)}: "
                              f"use {', '.join(Options.field_names())}")
        base = options if options is not None else Options()
        self.options = base.replace(**settings) if settings else base
        self._user_comm = comm
        self.comm: Any = None  # the private duplicate (an mpi4py Intracomm) while open
        self.backend: Any = None  # this rank's Backend (None on the master of a multi-rank job)
        self.capacities: list = []
        self._stats: Any = None  # CallStats, or the StatsParts it is built from when first read
        self._calls = 0
        self._closed = False
        self._in_call = threading.Lock()  # one call at a time: a second thread, or a kernel calling back, is refused
        self._session: CheckpointSession | None = None
        self._ulfm = False
        self._pending_trace: tuple | None = None
        self._trace_thread: threading.Thread | None = None
        self.layout: list | None = None  # two-level scheduling: [(group master, [members])], or None

    __init__.__doc__ = "Options:\n" + "\n".join(f"    {k}: {v}" for k, v in HELP.items())

    @property
    def policy(self):
        return self.options.policy

    # -- lifecycle -------------------------------------------------------------------
    def open(self) -> "Runtime":
        if self._closed:
            raise InvalidCall("this Runtime is closed (its `with` block has ended): open a new hm.Runtime")
        if self.comm is None:
            from mpi4py import MPI

            base = MPI.COMM_WORLD if self._user_comm is None else self._user_comm
            if base.Get_size() > 1:  # the worker's mailbox thread calls MPI while kernels run
                threads.require_serialized(MPI, base)
            wait_for_all(base)  # Dup is a blocking collective: don't spin while others arrive
            self.comm = base.Dup()
            self.layout = self._plan_layout()  # first: a group master runs no task, so it takes no device
            self._bind_device()
            self.capacities = self.comm.allgather(self.options.capacity)
            signals.install()
            # Whether a dead worker can be survived; every rank must agree.
            self._ulfm = all(self.comm.allgather(faults.ulfm_available())) if self.comm.size > 1 else False
            if self.comm.rank == MASTER and self.comm.size > 1:
                faults.log.info("hpcmicro: %s", "ULFM: dead workers are survived in the run" if self._ulfm else
                                "no ULFM: a dead rank ends the job; restart from the checkpoint")
            try:
                self._open_session()
            except BaseException:
                self.close()
                raise
        return self

    @property
    def stats(self) -> CallStats | None:
        """The last call's statistics (the same on every rank), assembled when first read."""
        if self._stats is not None and not isinstance(self._stats, CallStats):
            self._stats = self._stats.build()
        return self._stats

    @stats.setter
    def stats(self, value) -> None:
        self._stats = value

    def _bind_device(self) -> None:
        """Choose every task-running rank's backend; errors (device="gpu" without one) on every rank."""
        runs_tasks = (self.comm.rank != MASTER and self.comm.rank not in group_masters(self.layout)) \
            or self.comm.size == 1
        error = None
        self.backend = None
        if runs_tasks:
            try:
                self.backend = select_backend(self.options.device, self.comm,
                                              memory_limit=self.options.device_memory_limit)
            except InvalidCall as exc:
                error = str(exc)
            except Exception as exc:  # noqa: BLE001  (anything else must not leave the others in the allgather)
                error = f"choosing the device failed: {type(exc).__name__}: {exc}"
        idle = "master" if self.comm.rank == MASTER else "group master"
        seen = self.comm.allgather((error, self.backend.describe() if self.backend else idle))
        failed = [f"rank {r}: {e}" for r, (e, _) in enumerate(seen) if e]
        if failed:
            self.comm.Free()
            self.comm = None
            raise InvalidCall("; ".join(failed))
        if self.comm.rank == MASTER and self.comm.size > 1:
            described: dict = {}
            for r, (_, d) in enumerate(seen):
                described.setdefault(d, []).append(r)
            faults.log.info("hpcmicro: backends: %s",
                            "; ".join(f"ranks {rs}: {d}" for d, rs in described.items()))

    def _plan_layout(self) -> list | None:
        """Groups of workers under group masters (engine/group.py), from ``group_size``; None: one master.

        The same on every rank: every rank computes it from the same facts (the size, the option,
        and for node groups every rank's node, gathered here)."""
        size, want = self.comm.size, self.options.group_size
        if want is None or size < 3 or (want == "auto" and auto_group_size(size - 1) is None):
            return None  # no collective needed to know it
        node_of = node_of_ranks(self.comm) if want in ("node", "auto") else None
        layout = plan_groups(size, want, node_of)
        if layout and self.comm.rank == MASTER:
            faults.log.info("hpcmicro: two-level scheduling: %d group masters over %d workers", len(layout),
                            sum(len(m) for _, m in layout))
        return layout

    def _open_session(self) -> None:
        """Rank 0 opens the checkpoint; whatever goes wrong is raised on every rank (never left in the bcast)."""
        error = None
        if self.comm.rank == MASTER:
            try:
                self._session = CheckpointSession(self.options.checkpoint, self.options.resume)
            except (CheckpointError, InvalidCall) as exc:
                error = (type(exc).__name__, str(exc))
            except Exception as exc:  # a raw OSError, KeyError, ...: still about the checkpoint file
                error = ("CheckpointError", f"{self.options.checkpoint}: cannot open the checkpoint: "
                                            f"{type(exc).__name__}: {exc}")
        error = self.comm.bcast(error, root=MASTER)
        if error:
            raise (InvalidCall if error[0] == "InvalidCall" else CheckpointError)(error[1])

    def close(self) -> None:
        self._closed = True
        self._join_trace()
        if self.comm is not None:
            if self._session is not None:
                self._session.close()
                self._session = None
            signals.uninstall()
            self.comm.Free()
            self.comm = None

    def __enter__(self):
        return self.open()

    def __exit__(self, exc_type, exc, tb):
        if exc is not None and self.options.abort_on_error and self.comm is not None and self.comm.size > 1:
            if not getattr(exc, "collective", False):
                from mpi4py import MPI

                sys.stderr.write(f"hpcmicro: rank {self.comm.rank}: uncaught error, aborting the MPI job\n")
                traceback.print_exception(exc_type, exc, tb, file=sys.stderr)
                sys.stderr.flush()
                MPI.COMM_WORLD.Abort(1)
        self.close()
        return False

    @property
    def rank(self) -> int:
        return self.open().comm.rank

    @property
    def size(self) -> int:
        return self.open().comm.size

    @property
    def is_master(self) -> bool:
        return self.rank == MASTER

    @property
    def _writer(self):
        """The checkpoint writer (master only; benchmarks read its counters)."""
        return self._session.writer if self._session is not None else None

    # -- calls -----------------------------------------------------------------------
    def map(self, kernel, tasks, root: int | None = None) -> list | None:
        """Run ``kernel`` on every task; results in task-id order (spawned tasks included)."""
        try:
            return self._call("map", kernel, tasks, None, root)
        finally:
            self._start_trace_writer()

    def map_reduce(self, kernel, tasks, op="sum", root: int | None = None):
        """Run ``kernel`` on every task and combine the results in task-id order."""
        try:
            return self._call("map_reduce", kernel, tasks, op, root)
        finally:
            self._start_trace_writer()

    def _call(self, kind, kernel, tasks, op, root):
        self.open()
        if not self._in_call.acquire(blocking=False):
            raise InvalidCall("a call is already running on this Runtime: calls do not nest (no rt.map inside a "
                              "kernel: spawn tasks with hm.context().spawn) and threads must not share a Runtime")
        try:
            return self._call_now(kind, kernel, tasks, op, root)
        finally:
            self._in_call.release()

    def _call_now(self, kind, kernel, tasks, op, root):
        comm = self.comm
        t0 = time.perf_counter()
        index = self._calls
        self._calls += 1
        spec, error, stored, op_name = None, None, None, None
        kernel_name = describe_callable(kernel)  # digests bound arguments: once per call
        try:
            spec, op_name, stored = self._prepare(kind, kernel, kernel_name, tasks, op, root, index, t0)
        except (InvalidCall, CheckpointError) as exc:
            error = (type(exc).__name__, str(exc))
            op_name = repr(op)
        signature = (kind, kernel_name, op_name, TaskSource.describe(tasks), root, self.options.policy.name)
        n_roots = spec.n_roots if spec is not None else None
        replay = stored is not None and stored.complete
        if comm.size > 1:  # one round: the master's task count and stored state, the agreement checked on a digest
            master_roots, master_replay, seen = agree_on_call(comm, signature, error, n_roots, replay)
            if seen is not None:
                _check_agreement(seen)
                master_roots, master_replay = seen[MASTER][2], seen[MASTER][3]
            n_roots, replay = master_roots, master_replay
        elif error is not None:
            _check_agreement([(signature, error, n_roots, replay)])
        spec.n_roots = n_roots
        spec.epoch = time.perf_counter()  # every rank passed the same collective just now: the trace's zero
        if replay:
            return self._replay(kind, stored, root, t0)
        if self._session is not None:
            self._session.begin_call(index, spec.identity, spec.code)
        value, outcome = self._execute(spec, stored, root)
        self.stats = outcome.stats
        if self.options.trace and outcome.timelines is not None and self.comm.rank == MASTER:
            self._write_trace(outcome.timelines, {"call": index, "kind": kind, "policy": self.options.policy.name})
        error = outcome.error
        if error is not None:
            if isinstance(error, Preempted):
                faults.note_exit_status(error.code)
                if self.comm.rank == MASTER:  # left uncaught, a SystemExit prints nothing: say why the job stops
                    sys.stderr.write(f"hpcmicro: {error}\n")
                    sys.stderr.flush()
            raise error
        return value

    def _prepare(self, kind, kernel, kernel_name, tasks, op, root, index, t0):
        """Check this rank's arguments; the master also reads the tasks and finds the call in the checkpoint."""
        comm = self.comm
        if not callable(kernel):
            raise InvalidCall(f"kernel must be callable, got {short_repr(kernel)}")
        op_name, op_fn = None, None
        if kind == "map_reduce":
            op_name, op_fn = resolve_op(op)
            if self.options.on_error == "skip":
                op_fn = skip_aware(op_fn)
        if root is not None and not (isinstance(root, int) and 0 <= root < comm.size):
            raise InvalidCall(f"root must be None or a rank in [0, {comm.size}), got {root!r}")
        source, identity, stored, n_roots, code = None, "", None, None, {}
        if comm.rank == MASTER:
            source = TaskSource(tasks)
            tasks_digest = source.check_picklable()
            n_roots = source.n
            if kind == "map_reduce" and n_roots == 0:
                raise InvalidCall("map_reduce over no tasks has no value")
            if self.options.checkpoint:
                require_checkpoint_safe(self.options.checkpoint, kernel=kernel, op=op)  # the user's op, unwrapped
            identity = job_identity(kind, kernel_name, tasks_digest, op_name,
                                    {"on_error": self.options.on_error})
            if self.options.checkpoint:  # what the kernel and op run: an edit must not resume into old results
                code = code_parts("kernel", kernel)
                if callable(op):
                    code.update(code_parts("op", op))
            stored = self._session.stored_call(index, identity, code)
        elif isinstance(tasks, DECOMPOSITIONS):
            n_roots = len(tasks)
        decomposition = tasks if isinstance(tasks, DECOMPOSITIONS) else None
        spec = CallSpec(kind, kernel, source, decomposition, op_fn, n_roots, index, identity, t0, code)
        return spec, op_name, stored

    def _execute(self, spec: CallSpec, stored, root):
        """Run the call (again from the last cut after a lost worker, under ULFM); ``(value, outcome)``."""
        resume = stored
        while True:
            try:
                outcome = self._run_once(spec, resume)
                if self.comm.size == 1:
                    if outcome.error is None:
                        try:
                            self._store_result(spec, outcome)
                        except CheckpointError as exc:
                            raise result_lost(str(exc)) from None
                    return outcome.value, outcome
                store = functools.partial(self._store_result, spec, outcome) if self._session is not None else None
                outcome = conclude(self.comm, outcome, root, store)
                return outcome.value, outcome
            except Exception as err:
                if not (self._ulfm and faults.is_process_failure(err)):
                    raise
                self._recover()
                resume = self._session.last_cut if self._session is not None else None

    def _store_result(self, spec: CallSpec, outcome) -> None:
        """Write the finished call into the checkpoint (the master's); a failed write raises CheckpointError.

        On several ranks ``conclude`` calls this before the end-of-call header,
        so that a failed write is raised on every rank.
        """
        if self.comm.rank != MASTER or self._session is None:
            return
        self._session.complete(CallState(
            index=spec.index, identity=spec.identity, code=spec.code, kind=spec.kind, n_roots=spec.n_roots,
            complete=True, result=outcome.value, failed=list(outcome.stats.failed)))

    def _run_once(self, spec: CallSpec, resume):
        comm, opts = self.comm, self.options
        preempted = lambda signum: self._preempted(signum, spec.index)  # noqa: E731
        # Only the master draws progress (a worker's would cost an isatty() a call, for nothing).
        progress = Progress(opts.progress, opts.progress_every) if opts.progress and comm.rank == MASTER else None
        # Snapshots serve the checkpoint file and, under ULFM, the in-memory rollback point.
        checkpoint_every = opts.checkpoint_every if (opts.checkpoint or self._ulfm) else None
        on_cut = self._session.on_cut if self._session is not None else None  # the master's
        if comm.size == 1:  # one rank, or the master alone after every worker died (ULFM)
            return run_inprocess(spec, opts, self.backend or CPU, workers=opts.inprocess_workers, resume=resume,
                                 on_cut=on_cut, checkpoint_every=checkpoint_every,
                                 progress=progress, signal=signals.requested, signal_pending=signals.pending,
                                 preempted=preempted)
        layout = self.layout
        if comm.rank == MASTER:
            return run_master_rank(comm, spec, opts, self.capacities, resume=resume, on_cut=on_cut,
                                   checkpoint_every=checkpoint_every, progress=progress, signal=signals.requested,
                                   preempted=preempted, layout=layout)
        if layout:
            boss = {r: g for g, members in layout for r in members}
            if comm.rank not in boss:
                return run_group_rank(comm, spec, opts, self.capacities, layout, preempted=preempted)
            return run_worker_rank(comm, spec, opts, self.backend, signal=signals.requested, preempted=preempted,
                                   master_rank=boss[comm.rank])
        return run_worker_rank(comm, spec, opts, self.backend, signal=signals.requested, preempted=preempted)

    def _recover(self) -> None:
        """A rank died (ULFM): continue on the survivors' communicator."""
        old_size = self.comm.size
        self.comm, lost = faults.shrink(self.comm)
        faults.skip_finalize_at_exit()
        self.capacities = self.comm.allgather(self.options.capacity)
        self.layout = self._plan_layout()  # on the survivors' ranks
        if self.backend is None and self.comm.rank not in {MASTER, *group_masters(self.layout)}:
            # A group master before the shrink is a member now (ranks were renumbered): it needs a device.
            self.backend = select_backend(self.options.device, self.comm,
                                          memory_limit=self.options.device_memory_limit)
        if self.comm.rank == MASTER:
            faults.log.warning("hpcmicro: lost rank(s) %s; continuing on %d of %d ranks from the last snapshot",
                               lost, self.comm.size, old_size)

    def _replay(self, kind, stored, root, t0):
        """A call that completed before the restart: hand out its stored result."""
        comm = self.comm
        if comm.rank == MASTER:
            self._session.replayed(stored)
        self.stats = CallStats(kind, self.options.policy.name, comm.size, 0, time.perf_counter() - t0,
                               restored=True, failed=list(stored.failed) if stored is not None else [])
        self.stats = comm.bcast(self.stats, root=MASTER)
        return deliver(comm, stored.result if stored is not None else None, root)

    def _preempted(self, signum, index) -> Preempted:
        path = self.options.checkpoint
        where = f"progress saved in {path} (call {index})" if path else \
            "no checkpoint was configured, progress is lost"
        error = Preempted(f"preempted by {_signal_name(signum)}: {where}", signum, path)
        error.args = (f"{error}; exit status {error.code}",)
        return error

    # -- traces ----------------------------------------------------------------------
    def _write_trace(self, timelines, metadata) -> None:
        """Write the call's trace in a background thread, started once the call has returned its value
        (so it takes nothing from the call itself); joined by the next trace or close()."""
        self._join_trace()
        self._pending_trace = (timelines, metadata)

    def _start_trace_writer(self) -> None:
        pending, self._pending_trace = self._pending_trace, None
        if pending is not None:
            self._trace_thread = threading.Thread(target=write_chrome_trace, args=(self.options.trace, *pending),
                                                  name="hpcmicro-trace")
            self._trace_thread.start()

    def _join_trace(self) -> None:
        self._start_trace_writer()
        if self._trace_thread is not None:
            self._trace_thread.join()
            self._trace_thread = None


def _signal_name(signum) -> str:
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _check_agreement(seen) -> None:
    """Raise the same error on every rank if any rank had bad input or a different call."""
    for rank, (_, error, _, _) in enumerate(seen):
        if error is not None:
            cls = CheckpointError if error[0] == "CheckpointError" else InvalidCall
            raise cls(f"rank {rank}: {error[1]}")
    reference = seen[MASTER][0]
    fields = ("call", "kernel", "op", "tasks", "root", "policy")
    for rank, (sig, _, _, _) in enumerate(seen):
        if sig != reference:
            diffs = [f"{f}: rank 0 {a!r} vs rank {rank} {b!r}" for f, a, b in zip(fields, reference, sig) if a != b]
            raise InvalidCall("ranks disagree on the call: " + "; ".join(diffs))
