"""Everything that talks to MPI or the machine: collectives, ULFM, devices, signals."""
