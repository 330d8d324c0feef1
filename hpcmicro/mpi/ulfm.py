"""Surviving a dead worker with ULFM (User-Level Failure Mitigation).

With Open MPI 5 started as ``mpirun --with-ft ulfm``, a rank that dies is
reported to the others as an MPI error (ERR_PROC_FAILED, ...). The rank that
sees it revokes the runtime's communicator, so every other rank's next MPI
call fails too; then all survivors shrink it to a communicator without the
dead ranks and the call starts again from the last consistent cut (the last
snapshot), on fewer workers. Work done since that cut is redone; nothing is
counted twice because everything after the cut is discarded on every rank.

Without ULFM (MPICH, or Open MPI without the flag) a dead rank ends the job;
a restart from the last checkpoint file then loses nothing and duplicates
nothing.
"""

from __future__ import annotations

import logging

__all__ = ["ulfm_available", "is_process_failure", "shrink", "skip_finalize_at_exit"]

log = logging.getLogger("hpcmicro")


def ulfm_available() -> bool:
    """Whether this MPI reports dead ranks and can revoke and shrink communicators.

    Probed on a duplicate of COMM_SELF (MPICH raises NotImplementedError).
    Open MPI 5 has ULFM built in, but detects failures only when started with
    ``mpirun --with-ft ulfm`` (which sets OMPI_MCA_mpi_ft_enable); without it
    a dead rank still ends the job.

    Never raises, and calls nothing collective: every rank calls it and then
    ``allgather``s the answers (``Runtime.open``), so one rank leaving with an
    exception would leave the others waiting there for ever. A probe that
    fails is taken as "no ULFM" (a dead rank then ends the job, as on MPICH)
    and logged with the rank and the error; the ranks' answers are then
    combined (all must say yes), so every rank agrees.
    """
    try:
        return _probe_ulfm()
    except Exception as exc:  # noqa: BLE001  (an answer is owed to the other ranks whatever happened)
        log.warning("hpcmicro: rank %s: the ULFM probe failed (%s: %s); running without ULFM: a dead rank "
                    "ends the job", _world_rank(), type(exc).__name__, str(exc).split("\n")[0])
        return False


def _world_rank() -> str:
    try:
        from mpi4py import MPI

        return str(MPI.COMM_WORLD.Get_rank())
    except Exception:  # noqa: BLE001
        return "?"


def _probe_ulfm() -> bool:
    import os

    from mpi4py import MPI

    if "Open MPI" in MPI.Get_library_version():
        if os.environ.get("OMPI_MCA_mpi_ft_enable", "").lower() not in ("1", "true", "yes", "on"):
            return False

    try:
        probe = MPI.COMM_SELF.Dup()
    except MPI.Exception:
        return False
    try:
        probe.Revoke()
        shrunk = probe.Shrink()
        shrunk.Free()
        return True
    except (NotImplementedError, MPI.Exception, AttributeError):
        return False
    finally:
        try:
            probe.Free()
        except MPI.Exception:
            pass


def _failure_classes():
    from mpi4py import MPI

    return {getattr(MPI, name) for name in ("ERR_PROC_FAILED", "ERR_PROC_FAILED_PENDING", "ERR_REVOKED")
            if hasattr(MPI, name)}


def is_process_failure(exc: BaseException | None) -> bool:
    from mpi4py import MPI

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, MPI.Exception) and exc.Get_error_class() in _failure_classes():
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def shrink(comm):
    """Revoke ``comm`` (others may have already) and return the survivors' communicator.

    Returns ``(new_comm, lost_ranks)``, ranks as they were in ``comm``.
    """
    from mpi4py import MPI

    try:
        comm.Revoke()
    except MPI.Exception:
        pass
    new = comm.Shrink()
    old_ranks = new.allgather(comm.rank)
    lost = sorted(set(range(comm.size)) - set(old_ranks))
    try:
        comm.Free()
    except MPI.Exception:
        pass
    if 0 not in old_ranks:
        raise RuntimeError(
            "the master (rank 0) died; the run cannot continue in place: restart it from its checkpoint"
        )
    return new, lost


_exit_status = 0


def note_exit_status(status: int) -> None:
    """The status to leave with if ``skip_finalize_at_exit`` is in force (e.g. 75 when preempted)."""
    global _exit_status
    _exit_status = status


_finalize_skipped = False


def skip_finalize_at_exit() -> None:
    """After a rank died, end this process without MPI_Finalize.

    Open MPI's MPI_Finalize can wait forever on the dead process in its PMIx
    fence (open-mpi/ompi#11404). A Python exit handler runs before mpi4py's
    finalize; it flushes output and leaves with ``os._exit``: status 0, or 1
    after an uncaught exception (75 for hm.Preempted).
    """
    import atexit
    import os
    import sys

    global _finalize_skipped
    if _finalize_skipped:
        return
    _finalize_skipped = True
    previous_hook = sys.excepthook

    def hook(exc_type, exc, tb):
        global _exit_status
        _exit_status = getattr(exc, "exit_status", 1)
        previous_hook(exc_type, exc, tb)

    def leave():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status)

    sys.excepthook = hook
    atexit.register(leave)
