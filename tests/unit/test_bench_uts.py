"""benchmarks/bench_uts.py and bench_latency.py: trees, count checks and tables (no benchmark is run)."""

from benchmarks import bench_latency, bench_uts
from hpcmicro.kernels import uts


def test_small_tree_counts_are_exact():
    t = bench_uts.TREES["BIN_200_S2"]
    assert bench_uts.serial_loop(t.params) == t.nodes == 2409
    assert uts.serial_stats(t.params).max_depth == t.depth
    assert bench_uts.TREES["T3"].nodes == bench_uts.TREES["T3"].published == uts.PUBLISHED_NODES["T3"]


def test_the_deep_binomial_tree_is_the_first_200_subtrees_of_t3():
    deep, t3 = bench_uts.TREES["BIN_200_S42"].params, uts.T3
    assert uts.root(deep) == uts.root(t3)
    assert uts.children(deep, uts.root(deep)) == uts.children(t3, uts.root(t3))[:200]


def _facts():
    return {"commit": "abc1234", "measured": "x", "nproc": "2", "date": "d", "suite_s": 60.0}


def _rec(tree, system, config, nodes, rate, **kw):
    return {"tree": tree, "system": system, "config": config, "nodes": nodes, "nodes_per_s": rate,
            "wall_s": nodes / rate, "processes": 3, "verified": nodes == bench_uts.TREES[tree].nodes, **kw}


def test_render_checks_every_count_and_divides_by_the_serial_loop():
    launches = [{"command": "python benchmarks/bench_uts.py --system serial", "round": 1, "rc": 0,
                 "cpu_busy_before": 0.0}]
    good = [_rec("T3", "serial", "serial Python loop", 4_112_897, 500e3),
            _rec("T3", "hpcmicro", "hpcmicro steal, 3 ranks", 4_112_897, 250e3, steals=3),
            _rec("T3", "executor", "MPIPoolExecutor level by level, chunksize=64", 4_112_897, 50e3, chunksize=64,
                 levels=1573),
            _rec("T3", "executor", "MPIPoolExecutor level by level, chunksize=4096", 4_112_897, 40e3,
                 chunksize=4096, levels=1573)]
    text, ok = bench_uts.render("cmd", _facts(), launches, good)
    assert ok and "WRONG" not in text and "abc1234" in text
    assert "0.50x" in text and "= serial = published" in text and "chunksize=64 (best)" in text
    bad = good + [_rec("T3", "dask", "Dask", 4_112_896, 1e3)]
    text, ok = bench_uts.render("cmd", _facts(), launches, bad)
    assert not ok and "**WRONG: 4,112,896**" in text and "A node count was wrong" in text


def test_latency_percentile_and_table():
    assert bench_latency.percentile([1, 2, 3, 4, 5], 0.5) == 3
    assert bench_latency.percentile(list(range(11)), 0.9) == 9
    recs = [{"ranks": 3, "system": s, "median_ms": m, "p90_ms": 2 * m, "calls": 200, "rounds": 10}
            for s, m in (("hpcmicro", 2.0), ("hpcmicro_root0", 1.5), ("executor", 1.0), ("allreduce", 0.1))]
    launches = [{"command": "mpiexec -n 3 ...", "round": 1, "rc": 0, "cpu_busy_before": 0.1}]
    text = bench_latency.render("cmd", _facts(), launches, recs)
    assert "| 3 | 2.000 / 4.000 | 1.500 / 3.000 | 1.000 / 2.000 | 0.100 / 0.200 | 2.00x | 20x |" in text
