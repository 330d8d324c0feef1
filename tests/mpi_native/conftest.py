"""pytest-mpi runs one pytest session per rank. A failure on one rank would
leave the others waiting in a collective forever, so any failure aborts the
whole MPI job at once."""

import sys

import pytest


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report):
    if report.failed:
        from mpi4py import MPI

        if MPI.COMM_WORLD.size > 1:
            sys.stderr.write(f"rank {MPI.COMM_WORLD.rank}: {report.nodeid} failed; aborting the MPI job\n"
                             f"{report.longreprtext}\n")
            sys.stderr.flush()
            MPI.COMM_WORLD.Abort(1)
