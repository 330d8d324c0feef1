"""Unbalanced Tree Search (hpcmicro.kernels.uts): tasks that create tasks; the node count by a sum.

``count`` is the kernel (one node: spawn its children, count 1); ``finalize``
compares the total with the published count of the preset, when the reference
publishes one (``uts.PUBLISHED_NODES``: T1 to T5), and fails the run if it
differs.
"""

from hpcmicro import context
from hpcmicro.kernels import uts

__all__ = ["count", "check", "finalize"]


def count(node, preset="T3"):
    """Visit one node: spawn its children, count 1. The job's only root payload is "root"."""
    params = uts.PRESETS[preset]
    if node == "root":
        node = uts.root(params)
    ctx = context()
    for child in uts.children(params, node):
        ctx.spawn(child)
    return 1


def check(nodes: int, preset: str) -> str:
    """A line on ``nodes`` against the published count of ``preset``; ValueError if they differ."""
    published = uts.PUBLISHED_NODES.get(preset)
    if published is None:
        return f"{preset}: {nodes} nodes (no published count for this preset)"
    if int(nodes) != published:
        raise ValueError(f"{preset}: counted {nodes} nodes, the published count is {published}")
    return f"{preset}: {nodes} nodes (published: {published}, match)"


def finalize(nodes, output, preset="T3"):
    """job.finalize: the check's line, for ``hpcmicro run`` to print (rank 0, after the output is written)."""
    return check(nodes, preset)
