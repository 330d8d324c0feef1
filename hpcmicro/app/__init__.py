"""The application layer: the command line, job specs, planning, reports, Slurm."""
