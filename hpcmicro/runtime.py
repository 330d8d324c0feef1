"""Runtime: enter the communicator, split roles, run one call end to end."""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import re
import sys
import time
import traceback

import numpy

from .mpi import ulfm as faults
from .mpi import signals
from .mpi.devices import DEVICES, select_backend, to_host
from .io.checkpoint import CallState, CheckpointError, job_identity, read_checkpoint
from .io.checkpoint_writer import CheckpointWriter
from .errors import InvalidCall, Preempted, TaskError
from .engine.master import Master, run_master
from .observe.metrics import write_chrome_trace
from .engine.policies import get_policy
from .observe.progress import Progress
from .engine.events import Backoff, Stop
from .engine.combine import SKIPPED, combine_collectively, deliver, resolve_op, skip_aware
from .observe.stats import CallStats
from .engine.tasks import DECOMPOSITIONS, TaskSource, short_repr
from .engine.worker import Executor, WorkerLoop

__all__ = ["Runtime"]

MASTER = 0
ON_ERROR = ("raise", "skip")


def describe_callable(fn) -> str:
    """A name for a kernel that is the same on every rank running the same code."""
    if isinstance(fn, functools.partial):
        # Bound arguments matter (two ranks with different parameters run
        # different jobs); a digest compares them whole without a long name.
        text = re.sub(r" at 0x[0-9a-fA-F]+", "", repr((fn.args, sorted(fn.keywords.items()))))  # addresses differ per rank
        bound = hashlib.sha256(text.encode()).hexdigest()[:16]
        return f"partial({describe_callable(fn.func)}, args#{bound})"
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"


class Runtime:
    """Every rank enters; rank 0 is the master, the others run tasks.

    ``comm`` defaults to ``MPI.COMM_WORLD``; the runtime works on a private
    duplicate so its messages never meet the application's. ``capacity`` is
    this rank's relative speed: shares of work are proportional to it.
    ``abort_on_error``: an exception that leaves the ``with`` block on one rank
    only (not one hpcmicro raised on every rank) aborts the MPI job, because the
    other ranks would otherwise wait for it forever.

    Fault tolerance: ``checkpoint`` (an HDF5 path) with ``checkpoint_every``
    seconds; ``resume=False`` ignores an existing checkpoint and starts afresh.
    ``retries``: extra tries for a task that raises; ``on_error``: "raise"
    (TaskError) or "skip" (record and go on). ``task_timeout``: a task running
    longer is handed to another worker. ``preempt_grace``: seconds running
    tasks get to finish after SIGTERM/SIGUSR1 before the final checkpoint.
    """

    def __init__(self, comm=None, policy="steal", capacity: float = 1.0, abort_on_error: bool = True,
                 checkpoint=None, checkpoint_every: float = 60.0, resume: bool = True,
                 retries: int = 0, on_error: str = "raise", task_timeout: float | None = None,
                 preempt_grace: float = 10.0, device: str = "auto", device_memory_limit=None,
                 progress="auto", progress_every: float = 30.0, trace=None):
        self.policy = get_policy(policy)
        if progress not in (True, False, "auto", "lines"):
            raise InvalidCall(f"progress must be True, False, 'auto' or 'lines', got {progress!r}")
        self.progress = progress
        self.progress_every = _positive(progress_every, "progress_every")
        self.trace = os.fspath(trace) if trace is not None else None
        if device not in DEVICES:
            raise InvalidCall(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
        self.device = device
        self.device_memory_limit = device_memory_limit
        self.backend = None
        self.capacity = _positive(capacity, "capacity")
        self.abort_on_error = abort_on_error
        self.checkpoint = os.fspath(checkpoint) if checkpoint is not None else None
        self.checkpoint_every = _positive(checkpoint_every, "checkpoint_every")
        self.resume = bool(resume)
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise InvalidCall(f"retries must be an integer >= 0, got {retries!r}")
        self.retries = retries
        if on_error not in ON_ERROR:
            raise InvalidCall(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
        self.on_error = on_error
        self.task_timeout = None if task_timeout is None else _positive(task_timeout, "task_timeout")
        self.preempt_grace = _positive(preempt_grace, "preempt_grace", allow_zero=True)
        self._user_comm = comm
        self.comm = None
        self.stats: CallStats | None = None
        self._calls = 0
        self._stored: list[CallState] = []  # calls found in the checkpoint at open()
        self._done: list[CallState] = []  # calls of this run, complete, for the next checkpoint
        self._writer = None
        self._ulfm = False
        self._last_cut: CallState | None = None  # the master's latest consistent cut of the running call

    # -- lifecycle -------------------------------------------------------------------
    def open(self) -> "Runtime":
        if self.comm is None:
            from mpi4py import MPI

            base = MPI.COMM_WORLD if self._user_comm is None else self._user_comm
            _wait_for_all(base)  # Dup is a blocking collective: don't spin while others arrive
            self.comm = base.Dup()
            self._bind_device()
            self.capacities = self.comm.allgather(self.capacity)
            signals.install()
            # Whether a dead worker can be survived; every rank must agree.
            self._ulfm = all(self.comm.allgather(faults.ulfm_available())) if self.comm.size > 1 else False
            if self.comm.rank == MASTER and self.comm.size > 1:
                faults.log.info("hpcmicro: %s", "ULFM: dead workers are survived in the run" if self._ulfm else
                                "no ULFM: a dead rank ends the job; restart from the checkpoint")
            try:
                self._load_checkpoint()
            except BaseException:
                self.close()
                raise
        return self

    def _bind_device(self) -> None:
        """Choose every task-running rank's backend; errors (device="gpu" without one) on every rank."""
        runs_tasks = self.comm.rank != MASTER or self.comm.size == 1
        error = None
        self.backend = None
        if runs_tasks:
            try:
                self.backend = select_backend(self.device, self.comm, memory_limit=self.device_memory_limit)
            except InvalidCall as exc:
                error = str(exc)
        seen = self.comm.allgather((error, self.backend.describe() if self.backend else "master"))
        failed = [f"rank {r}: {e}" for r, (e, _) in enumerate(seen) if e]
        if failed:
            self.comm.Free()
            self.comm = None
            raise InvalidCall("; ".join(failed))
        if self.comm.rank == MASTER and self.comm.size > 1:
            described = {}
            for r, (_, d) in enumerate(seen):
                described.setdefault(d, []).append(r)
            faults.log.info("hpcmicro: backends: %s",
                            "; ".join(f"ranks {rs}: {d}" for d, rs in described.items()))

    def _load_checkpoint(self) -> None:
        error = None
        if self.checkpoint and self.comm.rank == MASTER:
            self._writer = CheckpointWriter(self.checkpoint)
            if self.resume and os.path.exists(self.checkpoint):
                try:
                    _, self._stored = read_checkpoint(self.checkpoint)
                except CheckpointError as exc:
                    error = f"{exc}; pass resume=False (CLI: --fresh) to start afresh"
        error = self.comm.bcast(error, root=MASTER)
        if error:
            raise CheckpointError(error)

    def close(self) -> None:
        self._join_trace()
        if self.comm is not None:
            if self._writer is not None:
                self._writer.close()
            signals.uninstall()
            self.comm.Free()
            self.comm = None

    def __enter__(self):
        return self.open()

    def __exit__(self, exc_type, exc, tb):
        if exc is not None and self.abort_on_error and self.comm is not None and self.comm.size > 1:
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
        comm = self.open().comm
        t0 = time.perf_counter()
        index = self._calls
        self._calls += 1
        source, error, op_fn, n_roots, identity, stored = None, None, None, None, None, None
        op_name = None
        try:
            if not callable(kernel):
                raise InvalidCall(f"kernel must be callable, got {short_repr(kernel)}")
            if kind == "map_reduce":
                op_name, op_fn = resolve_op(op)
                if self.on_error == "skip":
                    op_fn = skip_aware(op_fn)
            if root is not None and not (isinstance(root, int) and 0 <= root < comm.size):
                raise InvalidCall(f"root must be None or a rank in [0, {comm.size}), got {root!r}")
            if comm.rank == MASTER:
                source = TaskSource(tasks)
                tasks_digest = source.check_picklable()
                n_roots = source.n
                if kind == "map_reduce" and n_roots == 0:
                    raise InvalidCall("map_reduce over no tasks has no value")
                identity = job_identity(kind, describe_callable(kernel), tasks_digest, op_name,
                                        {"on_error": self.on_error})
                stored = self._stored_call(index, identity)
            elif isinstance(tasks, DECOMPOSITIONS):
                n_roots = len(tasks)
        except (InvalidCall, CheckpointError) as exc:
            error = (type(exc).__name__, str(exc))
            op_name = repr(op)
        signature = (kind, describe_callable(kernel), op_name, TaskSource.describe(tasks), root, self.policy.name)
        _wait_for_all(comm)
        seen = comm.allgather((signature, error, n_roots, stored is not None and stored.complete))
        _check_agreement(seen)
        n_roots, replay = seen[MASTER][2], seen[MASTER][3]
        epoch = time.perf_counter()  # every rank passed the same collective just now: the trace's zero
        if replay:
            return self._replay(kind, stored, root, t0)

        mode = "reduce" if kind == "map_reduce" else "map"
        decomposition = tasks if isinstance(tasks, DECOMPOSITIONS) else None
        if comm.size == 1:
            return self._call_in_process(kind, kernel, source, decomposition, mode, op_fn, n_roots, t0,
                                         index, identity, stored)

        spec = _CallSpec(kind, kernel, source, decomposition, mode, op_fn, n_roots, t0, index, identity)
        spec.epoch = epoch
        resume = stored
        while True:
            try:
                stats, exc, full = self._run_distributed(spec, resume)
                if exc is None:
                    value = deliver(self.comm, full, root)
                break
            except Exception as err:
                if not (self._ulfm and faults.is_process_failure(err)):
                    raise
                self._recover()
                resume = self._last_cut
                if self.comm.size == 1:  # every worker died: the master finishes alone
                    return self._call_in_process(kind, kernel, source, decomposition, mode, op_fn, n_roots,
                                                 t0, index, identity, resume)
        self.stats = stats
        if exc is not None:
            if isinstance(exc, Preempted):
                faults.note_exit_status(exc.exit_status)
            if isinstance(exc, Preempted) and self.comm.rank == MASTER:
                # Left uncaught, a SystemExit prints nothing: say why the job stops.
                sys.stderr.write(f"hpcmicro: {exc}\n")
                sys.stderr.flush()
            raise exc
        return value

    def _run_distributed(self, spec, resume):
        """One attempt at a call on several ranks: returns (stats, exception or None, full result on rank 0)."""
        comm = self.comm
        executor, master = None, None
        kind, mode, n_roots, op_fn = spec.kind, spec.mode, spec.n_roots, spec.op_fn

        def finish(stop):
            """The end of the call on every rank: statistics, then the result or the error."""
            _wait_for_all(comm)
            mine = (executor.stats.as_dict(), executor.times.summary()) if executor else (None, None)
            gathered = comm.allgather(mine)
            info = comm.bcast(((time.perf_counter() - spec.t0, master.created, master.steals_brokered,
                                master.messages, master.failed, master.queue_samples), master.bytes_from)
                              if master else None, root=MASTER)
            stats = CallStats.build(kind, self.policy.name, comm.size, info[0], [g[0] for g in gathered],
                                    [g[1] for g in gathered], info[1])
            if self.trace:
                timelines = comm.gather(executor.times.raw(comm.rank, spec.epoch) if executor else None,
                                        root=MASTER)
                if comm.rank == MASTER:  # written in the background: the call returns at once
                    self._write_trace([t for t in timelines if t is not None],
                                      {"call": spec.index, "kind": kind, "policy": self.policy.name})
            if stop.kind == "error":
                return stats, TaskError(**stop.info), None
            if stop.kind == "preempted":
                return stats, self._preempted(stop.info, spec.index), None
            if mode == "reduce":
                tree = master.tree if master else executor.tree
                full = combine_collectively(comm, tree, n_roots, op_fn)
                if full is SKIPPED:
                    full = None
            else:
                full = _ordered_results(master, n_roots) if master else None
            return stats, None, full

        if comm.rank != MASTER:
            executor = Executor(spec.kernel, mode, spec.decomposition, n_roots, op_fn, comm.rank, comm.size,
                                self.backend.xp, retries=self.retries, on_error=self.on_error,
                                device=self.backend.device, tracing=bool(self.trace))
            loop = WorkerLoop(comm, executor, self.policy, MASTER, task_timeout=self.task_timeout)
            return loop.run(finish)

        source = spec.source
        master = Master(source.runs(), self.policy, list(range(1, comm.size)), self.capacities[1:], mode,
                        op=op_fn, n_roots=n_roots, resume=resume, payload_runs=source.payloads,
                        preempt_grace_s=self.preempt_grace)

        def on_checkpoint(state):
            self._last_cut = self._label(state, spec.index, spec.identity)
            if self._writer is not None:
                self._writer.submit(self._done + [self._last_cut])

        # Snapshots serve the checkpoint file and, under ULFM, the in-memory rollback point.
        snapshots = self._writer is not None or self._ulfm
        run_master(comm, master, self.checkpoint_every if snapshots else None, on_checkpoint,
                   progress=Progress(self.progress, self.progress_every) if self.progress else None)
        if master.stop.kind == "preempted" and self._writer is not None:
            self._writer.write_now(self._done + [self._label(master.checkpoint, spec.index, spec.identity)])
        stats, exc, full = finish(master.stop)
        if exc is None and self._writer is not None:
            done = CallState(index=spec.index, identity=spec.identity, kind=kind, n_roots=n_roots, complete=True,
                             result=full, created=master.created, finished=master.finished,
                             failed=list(master.failed))
            self._done.append(done)
            self._writer.write_now(self._done)
        return stats, exc, full

    def _recover(self) -> None:
        """A rank died (ULFM): continue on the survivors' communicator."""
        old_size = self.comm.size
        self.comm, lost = faults.shrink(self.comm)
        faults.skip_finalize_at_exit()
        self.capacities = self.comm.allgather(self.capacity)
        if self.comm.rank == MASTER:
            faults.log.warning("hpcmicro: lost rank(s) %s; continuing on %d of %d ranks from the last snapshot",
                               lost, self.comm.size, old_size)

    def _write_trace(self, timelines, metadata) -> None:
        """Write the call's trace in a background thread, started once the call has returned its value
        (so it takes nothing from the call itself); joined by the next trace or close()."""
        self._join_trace()
        self._pending_trace = (timelines, metadata)

    def _start_trace_writer(self) -> None:
        import threading

        pending, self._pending_trace = getattr(self, "_pending_trace", None), None
        if pending is not None:
            self._trace_thread = threading.Thread(target=write_chrome_trace, args=(self.trace, *pending),
                                                  name="hpcmicro-trace")
            self._trace_thread.start()

    def _join_trace(self) -> None:
        self._start_trace_writer()
        thread = getattr(self, "_trace_thread", None)
        if thread is not None:
            thread.join()
            self._trace_thread = None

    # -- checkpoints -----------------------------------------------------------------
    def _stored_call(self, index, identity) -> CallState | None:
        """This call's entry in the loaded checkpoint, checked to be the same job."""
        if index >= len(self._stored):
            return None
        state = self._stored[index]
        if state.identity != identity:
            raise CheckpointError(
                f"{self.checkpoint}: call {index} in the checkpoint belongs to a different job "
                f"(kernel, tasks, op or on_error differ); pass resume=False (CLI: --fresh) to start afresh"
            )
        return state

    @staticmethod
    def _label(state: CallState, index, identity) -> CallState:
        state.index, state.identity = index, identity
        return state

    def _replay(self, kind, stored, root, t0):
        """A call that completed before the restart: hand out its stored result."""
        comm = self.comm
        if comm.rank == MASTER:
            self._done.append(stored)
        self.stats = CallStats(kind, self.policy.name, comm.size, 0, time.perf_counter() - t0, restored=True,
                               failed=list(stored.failed) if stored is not None else [])
        self.stats = comm.bcast(self.stats, root=MASTER)
        return deliver(comm, stored.result if stored is not None else None, root)

    def _preempted(self, signum, index) -> Preempted:
        where = f"progress saved in {self.checkpoint} (call {index})" if self.checkpoint else \
            "no checkpoint was configured, progress is lost"
        name = _signal_name(signum)
        return Preempted(f"preempted by {name}: {where}; exit status 75", signum, self.checkpoint)

    # -- one rank --------------------------------------------------------------------
    def _call_in_process(self, kind, kernel, source, decomposition, mode, op_fn, n_roots, t0,
                         index, identity, stored):
        ex = Executor(kernel, mode, decomposition, n_roots, op_fn, 0, 1, self.backend.xp,
                      retries=self.retries, on_error=self.on_error, device=self.backend.device,
                      tracing=bool(self.trace))
        master = Master(source.runs(), self.policy, [], [], mode, op=op_fn, n_roots=n_roots, resume=stored,
                        payload_runs=source.payloads)
        ex.queue.push_many(master.pool.entries() if self.policy.balances else master._static_entries)
        if master.tree is not None:
            ex.tree = master.tree

        def cut() -> CallState:
            """Everything finished so far into the master's books; the queue is what is pending."""
            roots, spawned = ex.take_results()
            master.root_segments.extend(roots)
            master.spawned_results.extend(spawned)
            master.failed.extend(ex.take_failed())
            return self._label(master._cut(ex.pending_entries()), index, identity)

        next_checkpoint = time.monotonic() + self.checkpoint_every
        run_one = ex.run_one
        while ex.queue:
            for _ in range(64):  # check signals and the checkpoint clock every 64 tasks, not every task
                if not ex.queue or not run_one():
                    break
            if ex.error is not None:
                raise TaskError(**ex.error)
            if signals.requested():
                if self._writer is not None:
                    self._writer.write_now(self._done + [cut()])
                exc = self._preempted(signals.requested(), index)
                sys.stderr.write(f"hpcmicro: {exc}\n")
                raise exc
            if self._writer is not None and time.monotonic() >= next_checkpoint:
                self._writer.submit(self._done + [cut()])
                next_checkpoint = time.monotonic() + self.checkpoint_every
        cut()
        ex.stats.wall_s = time.perf_counter() - t0
        self.stats = CallStats.build(kind, self.policy.name, 1, (ex.stats.wall_s, ex.stats.tasks, 0, 0,
                                     list(master.failed), []), [ex.stats.as_dict()], [ex.times.summary()], {})
        if self.trace:
            self._write_trace([ex.times.raw(0, t0)], {"call": index, "kind": kind})
        if mode == "reduce":
            value = None if ex.tree.result is SKIPPED else to_host(ex.tree.result)
        else:
            value = _ordered_results(master, n_roots)
        if self._writer is not None:
            self._done.append(CallState(index=index, identity=identity, kind=kind, n_roots=n_roots, complete=True,
                                        result=value, failed=list(master.failed)))
            self._writer.write_now(self._done)
        return value


class _CallSpec:
    """What one call runs, kept for its attempts (a ULFM recovery starts it again)."""

    def __init__(self, kind, kernel, source, decomposition, mode, op_fn, n_roots, t0, index, identity):
        self.kind, self.kernel, self.source, self.decomposition = kind, kernel, source, decomposition
        self.mode, self.op_fn, self.n_roots, self.t0 = mode, op_fn, n_roots, t0
        self.index, self.identity = index, identity


def _positive(value, name, allow_zero=False) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InvalidCall(f"{name} must be a positive number, got {value!r}") from None
    if not (value > 0 or (allow_zero and value == 0)):
        raise InvalidCall(f"{name} must be a positive number, got {value!r}")
    return value


def _signal_name(signum) -> str:
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _ordered_results(master, n_roots) -> list:
    """Root results and spawned results merged into task-id order; check none is missing."""
    values = [None] * n_roots
    filled = 0
    for start, vals in master.root_segments:
        values[start : start + len(vals)] = vals
        filled += len(vals)
    spawned = master.spawned_results
    if filled != n_roots:
        raise RuntimeError(f"internal error: {filled} of {n_roots} root results arrived")
    if not spawned:
        return values
    spawned.sort(key=lambda item: item[0])
    out, j = [], 0
    for i in range(n_roots):
        out.append(values[i])
        while j < len(spawned) and spawned[j][0][0] == i:
            out.append(spawned[j][1])
            j += 1
    return out


def _wait_for_all(comm) -> None:
    """Wait until every rank has arrived, sleeping rather than spinning.

    MPI's blocking collectives poll at full speed; a rank that arrives early
    (a worker waiting for the master to prepare) would burn a core.
    """
    if comm.size == 1:
        return
    req = comm.Ibarrier()
    backoff = Backoff()
    while not req.Test():
        backoff.sleep()


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
