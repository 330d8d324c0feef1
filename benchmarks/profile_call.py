"""Profile one-rank calls of no-op tasks: where the time of a call goes, and how many Python calls it makes.

    python benchmarks/profile_call.py                  # this checkout's hpcmicro
    PYTHONPATH=bench-out/rev-10fe1cf python benchmarks/profile_call.py   # another revision (from compare.py)

Function-call counts are exact and do not depend on how busy the machine is, so
two revisions can be compared by them even on a noisy machine.
"""

from __future__ import annotations

import cProfile
import pstats
import sys

import hpcmicro as hm


def noop(x=None):
    return None


def main(n: int = 200_000, top: int = 6) -> None:
    with hm.Runtime() as rt:
        for tasks in (hm.Range(n, 1), list(range(n))):
            rt.map(noop, tasks)  # warm up
            prof = cProfile.Profile()
            prof.enable()
            rt.map(noop, tasks)
            prof.disable()
            stats = pstats.Stats(prof)
            print(f"{type(tasks).__name__}({n}): {stats.total_calls} function calls, {stats.total_tt:.3f} s "
                  f"(hpcmicro from {hm.__file__})")
            stats.sort_stats("tottime").print_stats(top)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
