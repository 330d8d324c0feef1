"""The job of test_bitflips.py: make a partial checkpoint, then resume damaged copies of it.

``python -c 'from tests.faults.bitflip_job import main; main()' make CKPT``
runs the job on one rank until a kernel preempts it (SIGTERM to itself) in the
middle of its second call, and prints the uninterrupted result as JSON.
``... resume CKPT...`` resumes each file and prints one JSON line per file:
``{"file": ..., "outcome": "exact" | "CheckpointError" | "wrong" | "<other error>"}``.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import hpcmicro as hm

N = 400  # root tasks of the second call
STOP_AT = 250  # the task whose kernel sends SIGTERM (in the first run only)


def square(i):
    return i * i


def tree(i):
    if i % 50 == 0 and i < 1000:  # some spawned tasks, so the cut has spawned results and pending children
        for k in range(3):
            hm.context().spawn(1000 + i + k)
    if os.environ.get("BITFLIP_STOP") == "1" and i == STOP_AT:
        os.kill(os.getpid(), signal.SIGTERM)
    return [i, float(i) / 7]


def job(checkpoint=None, resume=True):
    options = dict(checkpoint=checkpoint, checkpoint_every=0.01, resume=resume) if checkpoint else {}
    with hm.Runtime(**options, progress=False) as rt:
        total = rt.map_reduce(square, list(range(100)))
        values = rt.map(tree, list(range(N)))
    return {"total": total, "values": values}


def main(argv=None):
    command, *paths = argv or sys.argv[1:]
    reference = job()
    if command == "make":
        os.environ["BITFLIP_STOP"] = "1"
        try:
            job(paths[0], resume=False)
        except hm.Preempted:
            pass
        else:
            raise SystemExit("the job was not preempted")
        print(json.dumps(reference), flush=True)
        return
    from hpcmicro.io.checkpoint import CheckpointError

    for path in paths:
        try:
            outcome = "exact" if job(path) == reference else "wrong"
        except CheckpointError:
            outcome = "CheckpointError"
        except Exception as exc:
            outcome = f"{type(exc).__name__}: {exc}"[:300]
        print(json.dumps({"file": path, "outcome": outcome}), flush=True)
