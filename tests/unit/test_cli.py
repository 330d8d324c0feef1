"""Tests of the ``hpcmicro`` command: bad specs, --version, real runs (1 rank and mpiexec -n 3)."""

import dataclasses
import importlib.util
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

import hpcmicro
from hpcmicro.app import cli
from hpcmicro.app.jobspec import load
from hpcmicro.constants import DEVICES, EXIT_BAD_INPUT, EXIT_OK, MPICH_ENV, ON_ERROR, POLICY_NAMES
from hpcmicro.errors import InvalidCall
from hpcmicro.io.checkpoint import CheckpointError
from hpcmicro.options import HELP, Options

REPO = Path(__file__).resolve().parents[2]
JOBS = REPO / "jobs"
MPIEXEC = shutil.which("mpiexec")
ATTRIBUTES = {"spec", "job", "kernel", "args", "call", "op", "policy", "tasks", "ranks", "wall_s",
              "hpcmicro_version", "created", "stats"}

# Small enough for a test: 37 tasks in chunks of 4 (the last one short), 3000 points each.
PI_N, PI_CHUNK, PI_SAMPLES, PI_SEED = 37, 4, 3000, 5


@pytest.fixture(autouse=True)
def isolated_imports(tmp_path):
    """Kernel modules imported from this test's folder are forgotten; sys.path gets restored."""
    path = list(sys.path)
    yield
    sys.path[:] = path
    folder = str(tmp_path.resolve())
    for name, module in list(sys.modules.items()):
        if (getattr(module, "__file__", None) or "").startswith(folder):
            del sys.modules[name]


@pytest.fixture(autouse=True)
def no_launcher_rank(monkeypatch):
    for name in cli.RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def pi_reference():
    """The expected hit count, from the kernel called directly over every task index."""
    spec = importlib.util.spec_from_file_location("pi_kernel_reference", JOBS / "pi_kernel.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return sum(module.hits(i, samples=PI_SAMPLES, seed=PI_SEED) for i in range(PI_N))


def pi_estimate_line():
    """The line jobs/pi.toml's finalize hook prints for the fixture's sizes."""
    return f"pi ~ {4 * pi_reference() / (PI_N * PI_SAMPLES):.5f} ({PI_N * PI_SAMPLES} samples)"


@pytest.fixture
def pi_job(tmp_path):
    """jobs/pi.toml and jobs/pi_kernel.py copied to a temp folder, with fewer tasks and points."""
    text = (JOBS / "pi.toml").read_text()
    text, k = re.subn(r"range = \{ n = \d+, chunk = \d+ \}", f"range = {{ n = {PI_N}, chunk = {PI_CHUNK} }}", text)
    text, k2 = re.subn(r"samples = \d+", f"samples = {PI_SAMPLES}", text)
    text, k3 = re.subn(r"seed = \d+", f"seed = {PI_SEED}", text)
    assert k == k2 == k3 == 1, "jobs/pi.toml changed shape; update this fixture"
    folder = tmp_path / "job"
    folder.mkdir()
    shutil.copy(JOBS / "pi_kernel.py", folder / "pi_kernel.py")
    (folder / "pi.toml").write_text(text)
    return folder / "pi.toml"


def run_cli(*args, env=None, cwd=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "hpcmicro", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=_env(env), cwd=cwd)


def run_mpiexec(n, *args, cwd=None, timeout=120):
    if MPIEXEC is None:
        pytest.skip("mpiexec not on PATH")
    script = shutil.which("hpcmicro")
    command = [script] if script else [sys.executable, "-m", "hpcmicro"]
    return subprocess.run([MPIEXEC, "-n", str(n), *command, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=_env(MPICH_ENV), cwd=cwd)


def _env(extra):
    env = {k: v for k, v in os.environ.items() if k not in cli.RANK_VARIABLES}
    env.update(extra or {})
    return env


def check_pi_output(path, ranks, policy="steal"):
    with h5py.File(path, "r") as f:
        result = f["result"][()]
        assert f["result"].shape == ()
        assert f["result"].attrs["encoding"] == "native"
        assert int(result) == pi_reference()
        attrs = dict(f.attrs)
    assert ATTRIBUTES <= set(attrs)
    assert attrs["job"] == "pi" and attrs["kernel"] == "pi_kernel:hits"
    assert attrs["call"] == "map_reduce" and attrs["op"] == "sum" and attrs["policy"] == policy
    assert attrs["ranks"] == ranks
    assert attrs["hpcmicro_version"] == hpcmicro.__version__
    assert "[job]" in attrs["spec"] and f"n = {PI_N}" in attrs["spec"]
    assert json.loads(attrs["args"]) == {"samples": PI_SAMPLES, "seed": PI_SEED}
    created = datetime.fromisoformat(attrs["created"])
    assert created.utcoffset().total_seconds() == 0
    stats = json.loads(attrs["stats"])
    assert stats["kind"] == "map_reduce" and stats["ranks"] == ranks and stats["policy"] == policy
    assert stats["tasks"] == -(-PI_N // PI_CHUNK)
    assert attrs["wall_s"] == stats["wall_s"] > 0
    return int(result)


def no_temp_files(folder):
    return not [p for p in Path(folder).iterdir() if p.name.endswith(".tmp")]


# -- command line basics --------------------------------------------------------------------


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"hpcmicro {hpcmicro.__version__}"
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"hpcmicro {hpcmicro.__version__}"


def test_console_script_version():
    script = shutil.which("hpcmicro")
    if script is None:
        pytest.skip("the hpcmicro console script is not on PATH")
    proc = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60, env=_env(None))
    assert proc.returncode == 0 and proc.stdout.strip() == f"hpcmicro {hpcmicro.__version__}"


@pytest.mark.parametrize("argv", [[], ["run"], ["run", "x.toml", "--policy", "fast"], ["bogus"]])
def test_usage_errors_exit_2(argv, capsys):
    assert cli.main(argv) == 2
    assert "usage: hpcmicro" in capsys.readouterr().err


def test_launch_rank(monkeypatch):
    assert cli.launch_rank() == 0
    for i, name in enumerate(cli.RANK_VARIABLES):
        monkeypatch.setenv(name, str(i + 3))
        assert cli.launch_rank() == 3  # the first one set wins
    monkeypatch.setenv("PMI_RANK", "junk")
    assert cli.launch_rank() == 4


# -- bad specs --------------------------------------------------------------------------------

BAD = '[job]\nkernel = "pi_kernel:hits"\npolcy = "steal"\n[tasks]\nrange = { n = 4 }\n'


def test_bad_spec_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD)
    proc = run_cli("run", bad)
    assert proc.returncode == 2
    assert proc.stderr == f"hpcmicro: error: {bad}: job.polcy: unknown key; did you mean 'policy'?\n"
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize("body, expected", [
    ("[job]\nkernel = 'nosuch_module_q:f'\n[tasks]\nlist = [1]\n", "job.kernel: no module named 'nosuch_module_q'"),
    ("[job]\nkernel = 'k:f'\n[tasks]\nrange = { n = -2 }\n", "tasks.range.n: must be >= 0, got -2"),
    ("[job\n", "invalid TOML"),
])
def test_other_bad_specs_exit_2(tmp_path, body, expected):
    (tmp_path / "k.py").write_text("raise ImportError('should not get this far')\n")
    bad = tmp_path / "bad.toml"
    bad.write_text(body)
    proc = run_cli("run", bad)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"hpcmicro: error: {bad}: {expected}")
    assert "Traceback" not in proc.stderr


def test_missing_spec_file_exits_2(tmp_path):
    proc = run_cli("run", tmp_path / "nope.toml")
    assert proc.returncode == 2
    assert proc.stderr == f"hpcmicro: error: {tmp_path / 'nope.toml'}: no such file\n"


def test_bad_spec_does_not_touch_mpi(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD)
    code = ("import sys\nfrom hpcmicro.app.cli import main\n"
            f"rc = main(['run', {str(bad)!r}])\n"
            "assert 'mpi4py.MPI' not in sys.modules, 'MPI was imported'\nsys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=_env(None))
    assert proc.returncode == 2, proc.stderr


def test_bad_spec_is_reported_by_rank_0_only(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD)
    for name in cli.RANK_VARIABLES:
        proc = run_cli("run", bad, env={name: "1"})
        assert proc.returncode == 2 and proc.stderr == "" and proc.stdout == "", name


def test_bad_spec_under_mpiexec(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD)
    proc = run_mpiexec(3, "run", bad, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("hpcmicro: error:") == 1, proc.stderr
    assert "job.polcy: unknown key; did you mean 'policy'?" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_output_folder_must_exist(pi_job, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", str(pi_job), "--output", "missing/pi.h5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"hpcmicro: error: {pi_job}: --output: folder {tmp_path / 'missing'} does not exist")


# -- real runs ------------------------------------------------------------------------------


def test_pi_in_process(pi_job, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", str(pi_job)]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    lines = out.out.splitlines()
    assert len(lines) == 2 and "\x1b" not in out.out  # the summary, then the finalize hook's estimate
    assert lines[0].startswith("pi: map_reduce(sum) over 10 tasks (10 run) on 1 rank, policy steal,")
    assert lines[0].endswith(f"; result {pi_reference()} -> pi.h5")
    assert lines[1] == pi_estimate_line()
    check_pi_output(tmp_path / "pi.h5", ranks=1)  # relative to the current directory, not the spec
    assert no_temp_files(tmp_path)


def test_pi_in_process_with_overrides(pi_job, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "out" / "other.h5"
    target.parent.mkdir()
    target.write_bytes(b"an older file, replaced whole")
    assert cli.main(["run", str(pi_job), "--policy", "static", "--output", str(target)]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(f"-> {target}")
    assert check_pi_output(target, ranks=1, policy="static") == pi_reference()
    assert no_temp_files(target.parent)


def test_pi_under_mpiexec(pi_job, tmp_path):
    proc = run_mpiexec(3, "run", pi_job, "--output", "pi3.h5", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2, proc.stdout  # rank 0 only: the summary and the estimate
    assert " on 3 ranks, policy steal, " in lines[0]
    assert lines[1] == pi_estimate_line()
    assert check_pi_output(tmp_path / "pi3.h5", ranks=3) == pi_reference()
    assert no_temp_files(tmp_path)


FAILING_KERNEL = '''
def f(x):
    if x == 2:
        raise ValueError("two is bad")
    return x
'''


def test_kernel_error_exits_1(tmp_path, monkeypatch, capsys):
    (tmp_path / "failing.py").write_text(FAILING_KERNEL)
    spec = tmp_path / "fail.toml"
    spec.write_text('[job]\nkernel = "failing:f"\n[tasks]\nlist = [0, 1, 2, 3]\n')
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", str(spec)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hpcmicro: error: task (2,) failed on rank 0")
    assert "ValueError: two is bad" in err
    assert not (tmp_path / "fail.h5").exists() and no_temp_files(tmp_path)


def test_kernel_error_under_mpiexec(tmp_path):
    (tmp_path / "failing.py").write_text(FAILING_KERNEL)
    spec = tmp_path / "fail.toml"
    spec.write_text('[job]\nkernel = "failing:f"\nop = "sum"\n[tasks]\nlist = [0, 1, 2, 3]\n')
    proc = run_mpiexec(3, "run", spec, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.count("hpcmicro: error: task (2,) failed") == 1, proc.stderr
    assert "BAD TERMINATION" not in proc.stdout + proc.stderr
    assert not (tmp_path / "fail.h5").exists()


def test_map_with_non_numeric_results_is_pickled(tmp_path, monkeypatch, capsys):
    (tmp_path / "records.py").write_text("def f(x):\n    return {'x': x, 'name': str(x) * 2}\n")
    spec = tmp_path / "rec.toml"
    spec.write_text('[job]\nname = "rec"\nkernel = "records:f"\n[tasks]\nlist = [3, "a", 5]\n')
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", str(spec)]) == 0
    assert "map over 3 tasks (3 run) on 1 rank" in capsys.readouterr().out
    with h5py.File(tmp_path / "rec.h5", "r") as f:
        ds = f["result"]
        assert ds.attrs["encoding"] == "pickle" and ds.shape == (3,)
        values = [pickle.loads(b.tobytes()) for b in ds[:]]
        assert f.attrs["call"] == "map" and f.attrs["op"] == ""
    assert values == [{"x": 3, "name": "33"}, {"x": "a", "name": "aa"}, {"x": 5, "name": "55"}]


# -- the HDF5 layout ---------------------------------------------------------------------------

STATS = SimpleNamespace(policy="steal", ranks=2, wall_s=0.5, tasks=3,
                        as_dict=lambda: {"kind": "map", "ranks": 2, "wall_s": 0.5})


@pytest.fixture
def any_spec(tmp_path):
    (tmp_path / "m.py").write_text("def f(x):\n    return x\n")
    spec = tmp_path / "any.toml"
    spec.write_text('[job]\nkernel = "m:f"\n[tasks]\nlist = [1, 2, 3]\n')
    return load(spec)


@pytest.mark.parametrize("call, result, encoding, expected", [
    ("map", [1, 2, 3], "native", np.array([1, 2, 3])),
    ("map", [1, 2.5, True], "native", np.array([1.0, 2.5, 1.0])),
    ("map", [np.ones((2, 3)), np.zeros((2, 3))], "native", np.stack([np.ones((2, 3)), np.zeros((2, 3))])),
    ("map", [], "native", np.empty((0,))),
    ("map", [np.ones(2), np.ones(3)], "pickle", [np.ones(2), np.ones(3)]),
    ("map", [1, "x", None], "pickle", [1, "x", None]),
    ("map", [2 ** 70, 1], "pickle", [2 ** 70, 1]),
    ("map_reduce", 42, "native", np.array(42)),
    ("map_reduce", np.float32(1.5), "native", np.array(1.5, dtype=np.float32)),
    ("map_reduce", np.arange(6).reshape(2, 3), "native", np.arange(6).reshape(2, 3)),
    ("map_reduce", {"a": [1, 2]}, "pickle", {"a": [1, 2]}),
    ("map_reduce", 2 ** 70, "pickle", 2 ** 70),
])
def test_result_encoding(tmp_path, any_spec, call, result, encoding, expected):
    spec = dataclasses.replace(any_spec, call=call, op="sum" if call == "map_reduce" else None)
    path = tmp_path / "r.h5"
    cli.write_output(str(path), spec, result, STATS)
    with h5py.File(path, "r") as f:
        ds = f["result"]
        assert ds.attrs["encoding"] == encoding
        if encoding == "native":
            got = ds[()]
            assert got.dtype == expected.dtype and got.shape == expected.shape
            np.testing.assert_array_equal(got, expected)
        elif call == "map":
            got = [pickle.loads(b.tobytes()) for b in ds[:]]
            assert len(got) == len(expected)
            for g, e in zip(got, expected):
                if isinstance(e, np.ndarray):
                    np.testing.assert_array_equal(g, e)
                else:
                    assert g == e
        else:
            assert pickle.loads(ds[()].tobytes()) == expected
        assert ATTRIBUTES <= set(f.attrs)
    assert no_temp_files(tmp_path)


def test_failed_write_leaves_no_trace(tmp_path, any_spec):
    path = tmp_path / "keep.h5"
    path.write_bytes(b"previous")
    with pytest.raises((pickle.PicklingError, AttributeError)):  # a lambda does not pickle
        cli.write_output(str(path), any_spec, [lambda: 0], STATS)
    assert path.read_bytes() == b"previous"
    assert no_temp_files(tmp_path)


def test_unwritable_result_exits_1(tmp_path, monkeypatch, capsys):
    # One rank runs in-process, so a result that does not pickle reaches the writer.
    (tmp_path / "lam.py").write_text("def f(x):\n    return lambda: x\n")
    spec = tmp_path / "lam.toml"
    spec.write_text('[job]\nkernel = "lam:f"\n[tasks]\nlist = [1]\n')
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", str(spec)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hpcmicro: error: cannot write lam.h5: ") and "Traceback" not in err
    assert not (tmp_path / "lam.h5").exists() and no_temp_files(tmp_path)


# -- Runtime options: defaults, help and checks from hpcmicro.options ---------------------------

# `hpcmicro run` flag -> the Options field it sets
RUN_FLAGS = {"--checkpoint": "checkpoint", "--checkpoint-every": "checkpoint_every", "--retries": "retries",
             "--on-error": "on_error", "--task-timeout": "task_timeout", "--preempt-grace": "preempt_grace",
             "--trace": "trace", "--progress-every": "progress_every"}


def run_actions():
    run = next(a for a in cli.build_parser()._actions if a.dest == "command").choices["run"]
    return {flag: action for action in run._actions for flag in action.option_strings}


@pytest.mark.parametrize("flag, name", sorted(RUN_FLAGS.items()))
def test_run_flags_take_default_and_help_from_options(flag, name):
    action = run_actions()[flag]
    assert action.dest == name
    assert action.default == next(f.default for f in dataclasses.fields(Options) if f.name == name)
    assert action.help.replace("%%", "%").startswith(HELP[name])


def test_policy_device_and_progress_flags_offer_the_shared_names():
    actions = run_actions()
    assert tuple(actions["--policy"].choices) == POLICY_NAMES
    assert tuple(actions["--device"].choices) == DEVICES
    assert tuple(actions["--on-error"].choices) == ON_ERROR
    assert actions["--policy"].help.startswith(HELP["policy"])
    assert actions["--progress"].help.startswith(HELP["progress"])


@pytest.mark.parametrize("argv, message", [
    (["--retries", "-1"], "argument --retries: retries must be an integer >= 0, got -1"),
    (["--checkpoint-every", "0"], "argument --checkpoint-every: checkpoint_every must be a positive number, got 0.0"),
    (["--task-timeout", "-2"], "argument --task-timeout: task_timeout must be a positive number, got -2.0"),
    (["--preempt-grace", "-1"], "argument --preempt-grace: preempt_grace must be a positive number, got -1.0"),
    (["--progress-every", "x"], "argument --progress-every: invalid float value: 'x'"),
    (["--group-size", "big"], "argument --group-size: group_size must be 'auto', 'node', 'off' or an integer >= 1"),
])
def test_bad_option_values_are_refused_by_options_before_mpi(tmp_path, argv, message, capsys):
    assert cli.main(["run", str(tmp_path / "any.toml"), *argv]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"hpcmicro run: error: {message}" in err


def test_run_options_from_the_command_line(pi_job):
    args = cli.build_parser().parse_args(["run", str(pi_job), "--policy", "static", "--retries", "2", "--fresh",
                                          "--on-error", "skip", "--task-timeout", "1.5", "--progress", "off",
                                          "--checkpoint", "c.h5", "--preempt-grace", "0"])
    spec = load(pi_job).with_overrides(policy=args.policy)
    options = cli.run_options(spec, args)
    assert isinstance(options, Options)
    assert options.policy.name == "static" and options.device == "auto"
    assert (options.retries, options.on_error, options.task_timeout, options.preempt_grace) == (2, "skip", 1.5, 0.0)
    assert (options.resume, options.progress, options.checkpoint) == (False, False, "c.h5")
    assert options.checkpoint_every == Options().checkpoint_every  # not given: the Runtime's default
    assert options.group_size == "auto"  # not given: the Runtime's default ($HPCMICRO_GROUP_SIZE, else auto)
    for given, expected in (("4", 4), ("node", "node"), ("off", None)):
        args = cli.build_parser().parse_args(["run", str(pi_job), "--group-size", given])
        assert cli.run_options(spec, args).group_size == expected


class RecordingRuntime:
    """Stands in for hm.Runtime: records its options, then refuses to open (nothing runs)."""

    seen: Options | None = None

    def __init__(self, comm=None, options=None, **settings):
        assert comm is None and not settings  # the CLI hands over one Options object
        RecordingRuntime.seen = options

    def open(self):
        raise InvalidCall("recorded")


def test_run_hands_the_flags_to_the_runtime(pi_job, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(hpcmicro, "Runtime", RecordingRuntime, raising=False)
    status = cli.main(["run", str(pi_job), "--device", "cpu", "--retries", "1", "--task-timeout", "4",
                       "--checkpoint-every", "5", "--trace", "t.json", "--progress", "lines", "--fresh"])
    assert status == EXIT_BAD_INPUT and "hpcmicro: error: recorded" in capsys.readouterr().err
    seen = RecordingRuntime.seen
    assert isinstance(seen, Options) and seen.policy.name == "steal"  # the spec's
    given = {"device": "cpu", "retries": 1, "task_timeout": 4.0, "checkpoint_every": 5.0, "trace": "t.json",
             "progress": "lines", "resume": False}
    assert {name: getattr(seen, name) for name in given} == given
    untouched = set(Options.field_names()) - set(given) - {"policy"}
    assert {name: getattr(seen, name) for name in untouched} == {name: getattr(Options(), name) for name in untouched}


# -- checkpoint errors name --fresh, once ------------------------------------------------------


@pytest.mark.parametrize("error, expected", [
    (CheckpointError("f.h5: damaged; pass resume=False (CLI: --fresh) to start afresh"),
     "f.h5: damaged; pass resume=False (CLI: --fresh) to start afresh"),
    (CheckpointError("f.h5: damaged; pass resume=False to start afresh"),
     "f.h5: damaged; pass --fresh to start afresh"),
    (CheckpointError("f.h5: damaged"), "f.h5: damaged; run with --fresh to ignore the checkpoint and start afresh"),
    (InvalidCall("rank 0: call 0 belongs to another job; pass resume=False to start afresh"),
     "rank 0: call 0 belongs to another job; pass --fresh to start afresh"),
    (InvalidCall("policy must be static or steal"), "policy must be static or steal"),
])
def test_cli_message_words_checkpoint_errors_for_the_command_line(error, expected):
    assert cli.cli_message(error) == expected


def test_damaged_checkpoint_exits_2_naming_fresh_once(pi_job, tmp_path):
    checkpoint = tmp_path / "run.ckpt.h5"
    checkpoint.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 50)
    proc = run_cli("run", pi_job, "--checkpoint", checkpoint, cwd=tmp_path)
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert proc.stderr.startswith(f"hpcmicro: error: {checkpoint}: ") and proc.stderr.count("--fresh") == 1
    assert "Traceback" not in proc.stderr and not (tmp_path / "pi.h5").exists()
    proc = run_cli("run", pi_job, "--checkpoint", checkpoint, "--fresh", cwd=tmp_path)
    assert proc.returncode == EXIT_OK, proc.stderr
    assert check_pi_output(tmp_path / "pi.h5", ranks=1) == pi_reference()


def test_checkpoint_of_another_job_exits_2_naming_fresh_once(pi_job, tmp_path):
    checkpoint = tmp_path / "run.ckpt.h5"
    assert run_cli("run", pi_job, "--checkpoint", checkpoint, cwd=tmp_path).returncode == EXIT_OK
    other = ("--set", "job.args.seed=99")  # another job: its result differs
    proc = run_cli("run", pi_job, "--checkpoint", checkpoint, *other, cwd=tmp_path)
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert "belongs to a different job" in proc.stderr and proc.stderr.count("--fresh") == 1
    proc = run_cli("run", pi_job, "--checkpoint", checkpoint, "--fresh", *other, cwd=tmp_path)
    assert proc.returncode == EXIT_OK, proc.stderr


# -- issue 10, item 13 and the resumed trace -------------------------------------------------


def test_trace_folder_must_exist(pi_job, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", str(pi_job), "--trace", "nosuchdir/t.json"]) == 2
    err = capsys.readouterr().err
    assert "--trace" in err and f"folder {tmp_path / 'nosuchdir'} does not exist" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "pi.h5").exists()


@pytest.mark.parametrize("content, words", [("[1, 2]", "got list"), ('{"a": 1}', "without 'traceEvents'"),
                                            ("not json", "not valid JSON"),
                                            ('{"traceEvents": [{"ph": "X", "pid": 0}]}', "numeric pid, ts or dur")])
def test_report_refuses_json_that_is_not_a_trace(tmp_path, capsys, content, words):
    path = tmp_path / "x.json"
    path.write_text(content)
    assert cli.main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"hpcmicro: error: {path}: not a trace") and words in err
    assert err.count("\n") == 1


def test_resumed_run_does_not_overwrite_the_trace(tmp_path):
    trace, checkpoint = tmp_path / "run.trace.json", tmp_path / "c.h5"
    assert cli.resume_trace_path(str(trace), str(checkpoint)) == str(trace)  # nothing to resume
    trace.write_text("{}")
    assert cli.resume_trace_path(str(trace), str(checkpoint)) == str(trace)  # no checkpoint: a fresh run
    checkpoint.write_bytes(b"")
    assert cli.resume_trace_path(str(trace), str(checkpoint), resume=False) == str(trace)  # --fresh
    assert cli.resume_trace_path(str(trace), str(checkpoint)) == str(tmp_path / "run.trace.1.json")
    (tmp_path / "run.trace.1.json").write_text("{}")
    assert cli.resume_trace_path(str(trace), str(checkpoint)) == str(tmp_path / "run.trace.2.json")
    assert cli.resume_trace_path(None, str(checkpoint)) is None
