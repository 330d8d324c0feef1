import sys

from tests.mpirun import mpiexec, run_command


def test_pytest_mpi_suite_under_mpiexec():
    argv = [mpiexec(), "-n", "4", sys.executable, "-m", "pytest", "--with-mpi", "-q", "-p", "no:cacheprovider",
            "tests/mpi_native"]
    run = run_command(argv, timeout=180)
    assert run.returncode == 0, str(run)
    assert "3 passed" in run.stdout, str(run)
