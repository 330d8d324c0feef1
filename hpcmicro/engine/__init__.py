"""The scheduling core: pure protocol machines, queues, policies, the combine tree.

Imports neither mpi4py nor h5py, nor the kernel library (a test enforces it)."""
