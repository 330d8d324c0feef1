"""Fault injection in the FTI style: flip one bit of a real partial checkpoint, resume it.

Every outcome must be the exact result of an uninterrupted run or a
CheckpointError: never a hang, a crash, a raw error or another result. A
sample of 40 offsets runs by default; HPCMICRO_SLOW=1 sweeps every byte (a
different bit at each; about a minute on 2 cores). The resumes run in a child process under a timeout, so
a hang or a segfault fails the test instead of killing pytest.
"""

import collections
import json
import os
import sys

import pytest

from tests.mpirun import run_command

RUNNER = [sys.executable, "-c", "from tests.faults.bitflip_job import main; main()"]
SLOW = os.environ.get("HPCMICRO_SLOW") == "1"
BATCH = 400  # files per child process


@pytest.fixture(scope="module")
def partial(tmp_path_factory):
    path = tmp_path_factory.mktemp("bitflips") / "run.h5"
    run = run_command([*RUNNER, "make", str(path)], timeout=120)
    assert run.returncode == 0, str(run)
    from hpcmicro.io.checkpoint import read_checkpoint

    _, calls = read_checkpoint(path)
    assert [c.complete for c in calls] == [True, False]  # one stored call, one partial one
    assert calls[1].segments and calls[1].pending_roots  # stopped in the middle
    return path, json.loads(run.stdout.strip().splitlines()[-1])


def offsets(size: int) -> list:
    if SLOW:
        return list(range(size))
    return sorted({round(k * (size - 1) / 39) for k in range(40)})  # 40 offsets spread over the file


def test_one_flipped_bit_gives_the_exact_result_or_a_checkpoint_error(partial, tmp_path):
    path, _ = partial
    data = path.read_bytes()
    todo = offsets(len(data))
    outcomes: dict = {}
    for start in range(0, len(todo), BATCH):
        batch = []
        for offset in todo[start:start + BATCH]:
            damaged = bytearray(data)
            damaged[offset] ^= 1 << (offset % 8)
            name = tmp_path / f"flip-{offset}.h5"
            name.write_bytes(damaged)
            batch.append(str(name))
        if start == 0:  # the undamaged file too: the resume works and is compared for real
            batch.append(str(path))
        run = run_command([*RUNNER, "resume", *batch], timeout=60 + len(batch))
        seen = {r["file"]: r["outcome"] for r in map(json.loads, run.stdout.splitlines()) if r.get("file")}
        stopped = next((f for f in batch if f not in seen), None)
        assert stopped is None and run.returncode == 0, f"resuming {stopped} crashed or hung\n{run}"
        if start == 0:
            assert seen.pop(str(path)) == "exact", "the undamaged checkpoint did not resume exactly"
            batch.pop()
        outcomes.update(seen)
        for name in batch:
            os.unlink(name)
    counts = collections.Counter(o if o in ("exact", "CheckpointError") else "other" for o in outcomes.values())
    summary = (f"bit flips: {len(outcomes)} offsets of a {len(data)}-byte checkpoint: {counts['exact']} exact, "
               f"{counts['CheckpointError']} CheckpointError, {counts['other']} other")
    print("\n" + summary)
    bad = {f: o for f, o in outcomes.items() if o not in ("exact", "CheckpointError")}
    assert not bad, f"{summary}; for example {dict(list(bad.items())[:5])}"
