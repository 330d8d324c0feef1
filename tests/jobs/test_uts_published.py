"""jobs/uts.toml checks its count against the reference's published one (job.finalize).

T1 and T3 themselves take ~8 s of serial Python each, so here the check runs on
a small preset (no published count) and the check function on its own; the
benchmark (benchmarks/bench_uts.py) counts T3 against the published figure.
"""

import importlib

import pytest

from hpcmicro.kernels import uts
from tests.jobs.test_jobs import launch  # also puts jobs/ on sys.path

uts_job = importlib.import_module("uts_job")


def test_published_counts_of_the_sample_trees():
    assert uts.PUBLISHED_NODES == {"T1": 4_130_071, "T2": 4_117_769, "T3": 4_112_897, "T4": 4_132_453,
                                   "T5": 4_147_582}
    assert set(uts.PUBLISHED_NODES) <= set(uts.PRESETS)


def test_check_accepts_the_published_count_and_refuses_any_other():
    assert uts_job.check(4_112_897, "T3") == "T3: 4112897 nodes (published: 4112897, match)"
    assert uts_job.check(4_130_071, "T1") == "T1: 4130071 nodes (published: 4130071, match)"
    with pytest.raises(ValueError, match="counted 4112896 nodes, the published count is 4112897"):
        uts_job.check(4_112_896, "T3")
    assert "no published count" in uts_job.check(13_457, "SMALL_BIN")


def test_the_job_prints_its_count_on_one_rank(tmp_path):
    run = launch(tmp_path, "uts", "job.args.preset=SMALL_GEO", ranks=1)
    assert run.stdout.splitlines()[-1] == "SMALL_GEO: 3987 nodes (no published count for this preset)"
