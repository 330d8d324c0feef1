import sys

# tests/mpi_native runs only inside its own mpiexec (see multirank/test_pytest_mpi.py).
collect_ignore = [] if "--with-mpi" in sys.argv else ["mpi_native"]
