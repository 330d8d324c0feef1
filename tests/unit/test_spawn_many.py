"""``ctx.spawn_many`` is ``spawn`` in a loop: the same tree, the same order, the same priorities."""

import functools
import operator

import hpcmicro as hm


def tree(many, priority, node):
    depth, i = node
    kids = [(depth + 1, 3 * i + k) for k in range(3)] if depth < 4 and i % 2 == 0 else []
    ctx = hm.context()
    if many:
        ctx.spawn_many(kids, priority=priority)
    else:
        for kid in kids:
            ctx.spawn(kid, priority=priority)
    return node


def listed(priority, node):
    return [tree(True, priority, node)]


def serial_preorder(roots):
    out, stack = [], list(reversed(roots))
    while stack:
        depth, i = node = stack.pop()
        out.append(node)
        kids = [(depth + 1, 3 * i + k) for k in range(3)] if depth < 4 and i % 2 == 0 else []
        stack.extend(reversed(kids))
    return out


def test_spawn_many_equals_spawn_in_a_loop_and_the_serial_preorder():
    roots = [(0, i) for i in range(6)]
    with hm.Runtime(progress=False) as rt:
        for priority in (None, 0, 5):
            one = rt.map(functools.partial(tree, False, priority), roots)
            many = rt.map(functools.partial(tree, True, priority), roots)
            assert many == one, priority
            if priority is None:  # priorities reorder running, never results: pre-order always
                assert many == serial_preorder(roots)
            # the reduction's order is pre-order too: concatenating one-node lists rebuilds the list
            assert rt.map_reduce(functools.partial(listed, priority), roots, op=operator.add) == one
