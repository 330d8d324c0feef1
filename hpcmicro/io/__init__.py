"""Files: HDF5 checkpoints and result files."""
