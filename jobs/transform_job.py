"""Transform an HDF5 dataset chunk by chunk (hpcmicro.kernels.hdf5_transform).

setup (rank 0, before the call) writes a demo input if it is missing; each
task reads one chunk, applies the function, and writes it to its rank's part
file; finalize stitches the parts into the output dataset (a virtual dataset).
"""

import os

import h5py
import numpy as np

from hpcmicro.kernels import hdf5_transform


def _params(input, dataset, output, func, shape, chunk):
    return hdf5_transform.TransformParams(input=input, dataset=dataset, output=output, func=func,
                                          block=tuple(chunk))


def setup(input="transform_input.h5", dataset="data", output="transform_out.h5", func="sqrt_sin",
          shape=(2048, 2048), chunk=(256, 256), seed=0):
    if os.path.exists(input):
        return
    rng = np.random.default_rng(seed)
    with h5py.File(input + ".tmp", "w") as f:
        f.create_dataset(dataset, data=rng.standard_normal(tuple(shape)) * 10, chunks=tuple(chunk))
    os.replace(input + ".tmp", input)


def transform_chunk(slices, input="transform_input.h5", dataset="data", output="transform_out.h5", func="sqrt_sin",
          shape=(2048, 2048), chunk=(256, 256), seed=0):
    return hdf5_transform.transform(_params(input, dataset, output, func, shape, chunk), slices)


def finalize(records, result_file, input="transform_input.h5", dataset="data", output="transform_out.h5",
             func="sqrt_sin", shape=(2048, 2048), chunk=(256, 256), seed=0):
    hdf5_transform.finalize(_params(input, dataset, output, func, shape, chunk), records)
