"""A tiny grayscale PNG writer (zlib only), so the jobs need no imaging library."""

import struct
import zlib

import numpy as np


def write_gray_png(path, image) -> None:
    """Write a 2-D array as an 8-bit grayscale PNG, scaled to 0..255."""
    a = np.asarray(image, dtype=np.float64)
    lo, hi = float(a.min()), float(a.max())
    pixels = np.zeros(a.shape, np.uint8) if hi == lo else ((a - lo) / (hi - lo) * 255).astype(np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)  # filter type 0 per row

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    h, w = pixels.shape
    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
