"""The Mandelbrot job: escape-time tiles (hpcmicro.kernels.mandelbrot), then one image, in HDF5 and PNG."""

import h5py
import numpy as np

from hpcmicro.kernels import mandelbrot


def _params(width, height, max_iter):
    return mandelbrot.MandelbrotParams(width=width, height=height, max_iter=max_iter)


def tile(slices, width=1024, height=768, max_iter=500, block=(64, 64)):
    """One tile of the image (an hm.Blocks payload): int32 escape counts."""
    return mandelbrot.tile_kernel(_params(width, height, max_iter), slices)


def assemble(tiles, width, height, block):
    import hpcmicro as hm

    image = np.empty((height, width), np.int32)
    for slices, t in zip(hm.Blocks((height, width), block), tiles):
        image[slices] = t
    return image


def finalize(tiles, output, width=1024, height=768, max_iter=500, block=(64, 64)):
    """Rank 0, after the call: the whole image into the output file, and a PNG beside it."""
    image = assemble(tiles, width, height, tuple(block))
    with h5py.File(output, "a") as f:
        if "image" in f:
            del f["image"]
        f.create_dataset("image", data=image, compression="gzip")
    from png import write_gray_png

    write_gray_png(output.rsplit(".", 1)[0] + ".png", np.log1p(image))
