"""benchmarks/compare.py: ordering, flags and the table (no benchmark is run)."""

import os
import subprocess

from benchmarks import compare


def test_abba_order():
    assert [compare.order(r) for r in range(4)] == [("base", "head"), ("head", "base")] * 2


def test_verdict_flags_regressions_only_in_their_direction():
    assert compare.verdict(0.94, higher_better=True) == "**REGRESSION**"
    assert compare.verdict(0.96, higher_better=True) == ""
    assert compare.verdict(1.06, higher_better=True) == "better"
    assert compare.verdict(1.06, higher_better=False) == "**REGRESSION**"
    assert compare.verdict(0.94, higher_better=False) == "better"
    assert compare.verdict(float("nan"), higher_better=True) == ""


def test_metrics_of_each_benchmark():
    tp = compare.metrics("throughput", "3 ranks, steal",
                         [{"tasks_kind": "Range", "n": 1000, "tasks_per_s": 5.0}])
    assert tp == {("3 ranks, steal, tasks=hm.Range(n, 1), n=1,000", "tasks/s"): (5.0, True)}
    irr = compare.metrics("irregular", "x", [{"workload": "pareto", "efficiency": 0.9}])
    assert irr == {("x, pareto", "efficiency"): (0.9, True)}
    ck = compare.metrics("checkpoint", "none", [{"wall": 2.0, "ok": True}])
    assert ck == {("checkpoints none", "wall s"): (2.0, False)}
    assert compare.metrics("checkpoint", "none", [{"wall": 2.0, "ok": False}]) == {}


def test_overhead_pairs_rounds_and_table_flags():
    def series(base, head):
        return {"base": list(enumerate(base)), "head": list(enumerate(head))}

    samples = {
        ("checkpoints none", "wall s"): {"bench": "checkpoint", "higher": False, "values": series([10, 10], [10, 10])},
        ("checkpoints every 1 s", "wall s"): {"bench": "checkpoint", "higher": False,
                                              "values": series([10.2, 10.2], [11, 11])},
        ("t", "tasks/s"): {"bench": "throughput", "higher": True, "values": {"base": [(0, 1e6)]}},
    }
    compare.add_overhead(samples)
    over = samples[("checkpoints every 1 s vs none", "overhead")]["values"]
    assert [round(v, 3) for _, v in over["head"]] == [1.1, 1.1]
    rows, flagged = compare.table(samples, 0.05)
    text = "\n".join(rows)
    assert "+10.0%" in text and "+2.0%" in text
    assert any("overhead" in f for f in flagged) and any("every 1 s (wall s)" in f for f in flagged)
    assert any(f.startswith("throughput: t") for f in flagged)  # head missing
    assert "**missing**" in text


def test_export_puts_a_revision_in_its_own_folder(tmp_path):
    sha, folder = compare.export("HEAD", out=str(tmp_path))
    assert os.path.basename(folder) == f"rev-{sha}"
    assert os.path.isfile(os.path.join(folder, "benchmarks", "bench_throughput.py"))
    assert compare.imported_from(folder) == os.path.join(folder, "hpcmicro", "__init__.py")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=compare.REPO, capture_output=True,
                          text=True).stdout.strip()
    assert sha == head
    assert compare.export("HEAD", out=str(tmp_path)) == (sha, folder)  # reused
