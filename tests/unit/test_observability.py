"""Progress, metrics, traces and reports."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest

import hpcmicro as hm
from hpcmicro.observe.metrics import TaskTimes, merge_summaries
from hpcmicro.observe.progress import Progress
from hpcmicro.app.report import load_trace, utilization_over_time
from tests.mpirun import ROOT, mpiexec, run_command


def test_progress_lines_in_a_log_have_no_control_codes():
    out = io.StringIO()
    p = Progress("auto", every=1.0, stream=out)  # StringIO is not a terminal
    p.update(10, 100, now=p.start + 2)
    p.update(20, 100, now=p.start + 2.5)  # too soon for the next line
    p.update(50, 120, now=p.start + 4)
    text = out.getvalue()
    assert text.splitlines()[0].startswith("hpcmicro: 10/100 tasks (10%), 5.0/s, ETA 0:00:18")
    assert len(text.splitlines()) == 2 and "50/120" in text
    assert all(c.isprintable() or c == "\n" for c in text)


def test_progress_bar_on_a_terminal_redraws_in_place():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    p = Progress("auto", stream=out)
    p.update(30, 60, now=p.start + 1)
    p.finish(60, 60)
    assert out.getvalue().startswith("\rhpcmicro [##############..............] 30/60")
    assert out.getvalue().endswith("done in 0:00:00\n") or "done in" in out.getvalue()


def test_percentiles_from_merged_histograms_match_numpy():
    rng = np.random.default_rng(1)
    data = rng.lognormal(mean=-6, sigma=1.0, size=20000)
    parts = [TaskTimes(), TaskTimes()]
    for i, d in enumerate(data):
        parts[i % 2].add(0.0, d, (i,))
    merged = merge_summaries([p.summary() for p in parts])
    assert merged["count"] == data.size
    assert merged["max"] == pytest.approx(np.float32(data.max()))
    for q, key in ((50, "p50"), (95, "p95")):
        assert merged[key] == pytest.approx(np.percentile(data, q), rel=0.06)


def test_trace_and_stats_in_process(tmp_path):
    import time

    path = tmp_path / "t.json"
    with hm.Runtime(trace=path) as rt:
        rt.map(time.sleep, [1e-4] * 50)  # slow enough for an event each
        assert rt.stats.task_time["count"] == 50
    trace = load_trace(path)
    assert list(trace) == [1] and trace[1][0].size == 50  # one lane: the one worker (id 1; rank 0 is the master)
    starts, durs = trace[1]
    assert (np.diff(starts) >= durs[:-1] - 1e-6).all()  # back to back, never overlapping
    t, u = utilization_over_time(trace, bins=10)
    assert t.size == 10 and (u >= 0).all() and (u <= 1.0 + 1e-9).all()


def test_tiny_tasks_share_trace_events_but_all_are_counted(tmp_path):
    path = tmp_path / "t.json"
    with hm.Runtime(trace=path) as rt:
        rt.map(len, hm.Range(20000, 1))
        assert rt.stats.task_time["count"] == 20000
    events = [e for e in json.loads(path.read_text())["traceEvents"] if e["ph"] == "X"]
    assert len(events) < 2000  # merged into blocks
    covered = sum(int(e["name"].split("-")[-1]) - int(e["name"].split("-")[0]) + 1 for e in events)
    assert covered == 20000  # every task is in exactly one event


SCRIPT = """
import json, time
import hpcmicro as hm
with hm.Runtime(trace={trace!r}) as rt:
    rt.map(time.sleep, [0.004] * 300)
    if rt.rank == 0:
        print(json.dumps({{"rank": 0, "stats": rt.stats.as_dict()}}))
"""


def test_multirank_metrics_and_trace(tmp_path):
    trace = tmp_path / "run.trace.json"
    script = tmp_path / "job.py"
    script.write_text(SCRIPT.format(trace=str(trace)))
    run = run_command([mpiexec(), "-n", "3", sys.executable, str(script)], timeout=120)
    stats = run.report()["stats"]
    assert stats["task_time"]["count"] == 300
    assert stats["task_time"]["p50"] == pytest.approx(0.004, rel=0.5)
    assert stats["queue_samples"] and stats["master_messages_per_s"] > 0
    for w in stats["workers"]:
        assert w["bytes_in"] > 0 and w["bytes_out"] > 0 and 0 < w["utilization"] <= 1
        assert w["comm_s"] >= 0
    events = json.loads(trace.read_text())["traceEvents"]
    assert {e["pid"] for e in events if e["ph"] == "X"} == {1, 2}
    assert sum(e["ph"] == "X" for e in events) == 300


def test_cli_report_table_and_plot(tmp_path):
    out, trace, png = tmp_path / "pi.h5", tmp_path / "pi.json", tmp_path / "pi.png"
    spec = tmp_path / "pi.toml"
    spec.write_text((ROOT / "jobs" / "pi.toml").read_text().replace("n = 1000", "n = 40")
                    .replace('kernel = "pi_kernel:hits"', 'kernel = "pi_kernel:hits"'))
    (tmp_path / "pi_kernel.py").write_text((ROOT / "jobs" / "pi_kernel.py").read_text())
    cmd = [sys.executable, "-m", "hpcmicro"]
    run = subprocess.run(cmd + ["run", str(spec), "--output", str(out), "--trace", str(trace)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    rep = subprocess.run(cmd + ["report", str(out), "--plot", str(png)], capture_output=True, text=True, timeout=120)
    assert rep.returncode == 0, rep.stderr
    assert "task time: mean" in rep.stdout and "rank" in rep.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_report_names_a_bad_file(tmp_path):
    bad = tmp_path / "x.h5"
    import h5py

    with h5py.File(bad, "w") as f:
        f["a"] = 1
    rep = subprocess.run([sys.executable, "-m", "hpcmicro", "report", str(bad)], capture_output=True, text=True,
                         timeout=60)
    assert rep.returncode == 2 and "neither an hpcmicro result file" in rep.stderr
