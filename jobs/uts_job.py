"""Unbalanced Tree Search (hpcmicro.kernels.uts): tasks that create tasks; the node count by a sum."""

from hpcmicro import context
from hpcmicro.kernels import uts


def count(node, preset="T3"):
    """Visit one node: spawn its children, count 1. The job's only root payload is "root"."""
    params = uts.PRESETS[preset]
    if node == "root":
        node = uts.root(params)
    ctx = context()
    for child in uts.children(params, node):
        ctx.spawn(child)
    return 1
