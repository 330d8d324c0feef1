"""Unit tests of hpcmicro.app.jobspec: loading, defaults and every validation error (no MPI)."""

import functools
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hpcmicro.app import jobspec
from hpcmicro.app.jobspec import JobSpecError, load
from hpcmicro.engine.tasks import Blocks, Range

REPO = Path(__file__).resolve().parents[2]

KERNEL_MODULE = '''
def hits(indices, samples=10, seed=0):
    return len(indices) * samples + seed

def kwonly(x, *, scale):
    return x * scale

def anykw(x, **kw):
    return x

def nopayload():
    return 1

class Holder:
    @staticmethod
    def run(x):
        return x

VALUE = 3
'''


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


def write_spec(tmp_path, body, module=KERNEL_MODULE, name="job.toml", module_name="kmod"):
    if module is not None:
        (tmp_path / f"{module_name}.py").write_text(textwrap.dedent(module))
    spec = tmp_path / name
    spec.write_text(textwrap.dedent(body))
    return spec


MINIMAL = """
[job]
kernel = "kmod:hits"
[tasks]
range = { n = 10 }
"""


# -- valid specs ---------------------------------------------------------------------------


def test_minimal_spec_defaults(tmp_path):
    spec = load(write_spec(tmp_path, MINIMAL, name="demo.toml"))
    assert spec.name == "demo"
    assert spec.kernel == "kmod:hits"
    assert spec.call == "map" and spec.op is None
    assert spec.policy == "steal"
    assert spec.output == "demo.h5"
    assert spec.args == {}
    assert spec.tasks_source == "range"
    assert spec.build_tasks() == Range(10, 1)
    assert spec.n_tasks == 10
    assert spec.text == (tmp_path / "demo.toml").read_text()
    assert spec.kernel_callable() is spec.function
    assert spec.function(range(2)) == 20


def test_full_spec(tmp_path):
    spec = load(write_spec(tmp_path, """
        [job]
        name = "full"
        kernel = "kmod:hits"
        call = "map_reduce"
        op = "max"
        policy = "static"
        output = "out/full.h5"
        [job.args]
        samples = 7
        seed = 1
        [tasks]
        range = { n = 10, chunk = 4 }
    """))
    assert (spec.name, spec.call, spec.op, spec.policy, spec.output) == (
        "full", "map_reduce", "max", "static", "out/full.h5")
    assert spec.build_tasks() == Range(10, 4)
    assert spec.n_tasks == 3
    kernel = spec.kernel_callable()
    assert isinstance(kernel, functools.partial) and kernel.keywords == {"samples": 7, "seed": 1}
    assert kernel(range(3)) == 22


def test_op_implies_map_reduce_and_map_reduce_defaults_to_sum(tmp_path):
    spec = load(write_spec(tmp_path, MINIMAL.replace('[tasks]', 'op = "prod"\n[tasks]')))
    assert (spec.call, spec.op) == ("map_reduce", "prod")
    spec = load(write_spec(tmp_path, MINIMAL.replace('[tasks]', 'call = "map_reduce"\n[tasks]')))
    assert (spec.call, spec.op) == ("map_reduce", "sum")


def test_blocks_and_list_sources(tmp_path):
    spec = load(write_spec(tmp_path, """
        [job]
        kernel = "kmod:hits"
        [tasks]
        blocks = { shape = [10, 7], block = [4, 4] }
    """))
    assert spec.build_tasks() == Blocks((10, 7), (4, 4))
    assert spec.n_tasks == len(Blocks((10, 7), (4, 4))) == 6
    spec = load(write_spec(tmp_path, """
        [job]
        kernel = "kmod:hits"
        [tasks]
        list = [1, "two", [3], { four = 4 }]
    """))
    assert spec.build_tasks() == [1, "two", [3], {"four": 4}]
    assert spec.n_tasks == 4


def test_table_syntax_for_task_source_and_args(tmp_path):
    spec = load(write_spec(tmp_path, """
        [job]
        kernel = "kmod:hits"
        [job.args]
        samples = 3
        [tasks.range]
        n = 5
        chunk = 2
    """))
    assert spec.build_tasks() == Range(5, 2)
    assert spec.args == {"samples": 3}


def test_dotted_function_name(tmp_path):
    spec = load(write_spec(tmp_path, MINIMAL.replace("kmod:hits", "kmod:Holder.run")))
    assert spec.function(5) == 5


def test_var_keyword_kernel_accepts_any_arg(tmp_path):
    spec = load(write_spec(tmp_path, """
        [job]
        kernel = "kmod:anykw"
        args = { whatever = 1 }
        [tasks]
        list = [1]
    """))
    assert spec.args == {"whatever": 1}


def test_spec_folder_goes_first_on_sys_path(tmp_path):
    # A module that shadows nothing else, found only through the spec's folder.
    spec = load(write_spec(tmp_path, MINIMAL.replace("kmod", "only_here_kmod"), module_name="only_here_kmod"))
    assert sys.path[0] == str(tmp_path.resolve())
    assert Path(sys.modules["only_here_kmod"].__file__).parent == tmp_path.resolve()
    assert spec.function(range(1)) == 10


def test_with_overrides(tmp_path):
    spec = load(write_spec(tmp_path, MINIMAL))
    assert spec.with_overrides() is spec
    other = spec.with_overrides(policy="static", output="x.h5")
    assert (other.policy, other.output) == ("static", "x.h5")
    assert (spec.policy, spec.output) == ("steal", "job.h5")
    with pytest.raises(JobSpecError, match=r"--policy: unknown policy 'stael'.*did you mean 'steal'"):
        spec.with_overrides(policy="stael")
    with pytest.raises(JobSpecError, match=r"--output: must not be empty"):
        spec.with_overrides(output="")


def test_example_pi_spec_loads():
    spec = load(REPO / "jobs" / "pi.toml")
    assert (spec.name, spec.kernel, spec.call, spec.op, spec.policy, spec.output) == (
        "pi", "pi_kernel:hits", "map_reduce", "sum", "steal", "pi.h5")
    assert spec.args == {"samples": 100000, "seed": 0}
    assert spec.build_tasks() == Range(1000, 1)


def test_spec_options_are_checked_by_options(tmp_path, monkeypatch):
    """job.device and job.policy go through hpcmicro.options.Options: its rules apply, the key is named."""
    from hpcmicro.errors import InvalidCall
    from hpcmicro.options import Options

    class NoGpuOptions(Options):
        def __post_init__(self):
            if self.device == "gpu":
                raise InvalidCall("device 'gpu' is not available here")
            super().__post_init__()

    monkeypatch.setattr(jobspec, "Options", NoGpuOptions)
    path = write_spec(tmp_path, MINIMAL.replace("[tasks]", 'device = "gpu"\n[tasks]'))
    with pytest.raises(JobSpecError, match=r"job\.device: device 'gpu' is not available here"):
        load(path)
    spec = load(write_spec(tmp_path, MINIMAL))
    assert spec.device == "auto" and spec.policy == "steal"  # Options' defaults
    with pytest.raises(JobSpecError, match=r"--device: device 'gpu' is not available here"):
        spec.with_overrides(device="gpu")


def test_loading_does_not_import_mpi(tmp_path):
    spec = write_spec(tmp_path, MINIMAL)
    code = (
        "import sys\n"
        "from hpcmicro.app.jobspec import load\n"
        f"s = load({str(spec)!r})\n"
        "s.build_tasks(); s.kernel_callable()\n"
        "assert 'mpi4py.MPI' not in sys.modules, 'MPI imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


# -- errors --------------------------------------------------------------------------------

# (spec body, dotted key, the rest of the message: a regular expression)
ERRORS = [
    # structure
    ('[jobs]\nkernel = "kmod:hits"\n[tasks]\nlist = [1]\n', "jobs", r"unknown key; did you mean 'job'\?"),
    ('[tasks]\nlist = [1]\n', "job", r"missing required table"),
    ('[job]\nkernel = "kmod:hits"\n', "tasks", r"missing required table"),
    ('job = 3\n[tasks]\nlist = [1]\n', "job", r"expected a table, got integer 3"),
    ('tasks = [1]\n[job]\nkernel = "kmod:hits"\n', "tasks", r"expected a table, got array"),
    # [job] keys
    ('[job]\nkernel = "kmod:hits"\npolcy = "steal"\n[tasks]\nlist = [1]\n', "job.polcy",
     r"unknown key; did you mean 'policy'\?"),
    ('[job]\nkernal = "kmod:hits"\n[tasks]\nlist = [1]\n', "job.kernal", r"unknown key; did you mean 'kernel'\?"),
    ('[job]\nkernel = "kmod:hits"\nzzz = 1\n[tasks]\nlist = [1]\n', "job.zzz",
     r"unknown key; valid keys: args, call, device, finalize, kernel, name, op, output, policy, setup"),
    ('[job]\nname = "x"\n[tasks]\nlist = [1]\n', "job.kernel", r"missing required key"),
    ('[job]\nkernel = 3\n[tasks]\nlist = [1]\n', "job.kernel", r"expected a string, got integer 3"),
    ('[job]\nkernel = "kmod.hits"\n[tasks]\nlist = [1]\n', "job.kernel",
     r"expected 'module:function', got 'kmod.hits'"),
    ('[job]\nkernel = "kmod:"\n[tasks]\nlist = [1]\n', "job.kernel", r"expected 'module:function'"),
    ('[job]\nkernel = "kmod:hits"\nname = ""\n[tasks]\nlist = [1]\n', "job.name", r"must not be empty"),
    ('[job]\nkernel = "kmod:hits"\nname = "a/b"\n[tasks]\nlist = [1]\n', "job.name",
     r"must not contain path separators"),
    ('[job]\nkernel = "kmod:hits"\nname = ["a"]\n[tasks]\nlist = [1]\n', "job.name", r"expected a string, got array"),
    ('[job]\nkernel = "kmod:hits"\ncall = "mapreduce"\n[tasks]\nlist = [1]\n', "job.call",
     r"unknown call 'mapreduce'; use one of map, map_reduce \(did you mean 'map_reduce'\?\)"),
    ('[job]\nkernel = "kmod:hits"\nop = "add"\n[tasks]\nlist = [1]\n', "job.op",
     r"unknown op 'add'; use one of sum, prod, min, max"),
    ('[job]\nkernel = "kmod:hits"\nop = "sum"\ncall = "map"\n[tasks]\nlist = [1]\n', "job.op",
     r"only applies to call = 'map_reduce'"),
    ('[job]\nkernel = "kmod:hits"\npolicy = "stael"\n[tasks]\nlist = [1]\n', "job.policy",
     r"unknown policy 'stael'; use one of static, steal \(did you mean 'steal'\?\)"),
    ('[job]\nkernel = "kmod:hits"\npolicy = true\n[tasks]\nlist = [1]\n', "job.policy",
     r"expected a string, got boolean True"),
    ('[job]\nkernel = "kmod:hits"\noutput = 5\n[tasks]\nlist = [1]\n', "job.output",
     r"expected a string, got integer 5"),
    ('[job]\nkernel = "kmod:hits"\noutput = ""\n[tasks]\nlist = [1]\n', "job.output", r"must not be empty"),
    # [job.args]
    ('[job]\nkernel = "kmod:hits"\nargs = 3\n[tasks]\nlist = [1]\n', "job.args", r"expected a table, got integer 3"),
    ('[job]\nkernel = "kmod:hits"\n[job.args]\nsamplez = 3\n[tasks]\nlist = [1]\n', "job.args.samplez",
     r"not a keyword argument of kmod:hits; did you mean 'samples'\?"),
    ('[job]\nkernel = "kmod:hits"\n[job.args]\n"not id" = 3\n[tasks]\nlist = [1]\n', 'job.args."not id"',
     r"not a valid Python keyword argument name"),
    ('[job]\nkernel = "kmod:kwonly"\n[tasks]\nlist = [1]\n', "job.args.scale",
     r"missing required key \(a required argument of kmod:kwonly\)"),
    ('[job]\nkernel = "kmod:hits"\n[job.args]\nindices = 3\n[tasks]\nlist = [1]\n', "job.args",
     r"cannot call kmod:hits\(payload, \*\*args\): multiple values for argument 'indices'"),
    ('[job]\nkernel = "kmod:nopayload"\n[tasks]\nlist = [1]\n', "job.kernel",
     r"kmod:nopayload must take the task payload as its first positional argument"),
    # the kernel's module and function
    ('[job]\nkernel = "nosuchmod:f"\n[tasks]\nlist = [1]\n', "job.kernel",
     r"no module named 'nosuchmod' \(searched .* first"),
    ('[job]\nkernel = "kmod.sub:f"\n[tasks]\nlist = [1]\n', "job.kernel", r"no module named 'kmod.sub'"),
    ('[job]\nkernel = "kmod:hitz"\n[tasks]\nlist = [1]\n', "job.kernel",
     r"'kmod' has no attribute 'hitz'; did you mean 'hits'\?"),
    ('[job]\nkernel = "kmod:Holder.rn"\n[tasks]\nlist = [1]\n', "job.kernel",
     r"'kmod.Holder' has no attribute 'rn'; did you mean 'run'\?"),
    ('[job]\nkernel = "kmod:VALUE"\n[tasks]\nlist = [1]\n', "job.kernel",
     r"'kmod:VALUE' is not callable \(it is integer 3\)"),
    # [tasks]
    ('[job]\nkernel = "kmod:hits"\n[tasks]\n', "tasks", r"no task source; give exactly one of range, blocks, list"),
    ('[job]\nkernel = "kmod:hits"\n[tasks]\nrange = { n = 1 }\nlist = [1]\n', "tasks",
     r"more than one task source \(range, list\); give exactly one"),
    ('[job]\nkernel = "kmod:hits"\n[tasks]\nrnage = { n = 1 }\n', "tasks.rnage",
     r"unknown key; did you mean 'range'\?"),
    ('[job]\nkernel = "kmod:hits"\n[tasks]\nrange = 5\n', "tasks.range", r"expected a table, got integer 5"),
    ('[job]\nkernel = "kmod:hits"\n[tasks]\nrange = { chunk = 2 }\n', "tasks.range.n", r"missing required key"),
    ('[job]\nkernel = "kmod:hits"\n[tasks]\nrange = { n = -1 }\n', "tasks.range.n", r"must be >= 0, got -1"),
    ('[job]\nkernel = "kmod:hits"\n[tasks]\nrange = { n = 1.5 }\n', "tasks.range.n",
     r"expected an integer, got float 1.5"),
    ('[job]\nkernel = "kmod:hits"\n[tasks]\nrange = { n = true }\n', "tasks.range.n",
     r"expected an integer, got boolean True"),
    ('[job]\nkernel = "kmod:hits"\n[tasks]\nrange = { n = 4, chunk = 0 }\n', "tasks.range.chunk",
     r"must be >= 1, got 0"),
    ('[job]\nkernel = "kmod:hits"\n[tasks]\nrange = { n = 4, chunks = 2 }\n', "tasks.range.chunks",
     r"unknown key; did you mean 'chunk'\?"),
    ('[job]\nkernel = "kmod:hits"\n[tasks]\nblocks = { shape = [8, 8], block = [4] }\n', "tasks.blocks.block",
     r"has 1 entries but shape has 2"),
    ('[job]\nkernel = "kmod:hits"\n[tasks]\nblocks = { shape = [], block = [] }\n', "tasks.blocks.shape",
     r"must have at least one entry"),
    ('[job]\nkernel = "kmod:hits"\n[tasks]\nblocks = { shape = [8, "x"], block = [4, 4] }\n', "tasks.blocks.shape",
     r"entry 1 must be an integer, got string 'x'"),
    ('[job]\nkernel = "kmod:hits"\n[tasks]\nblocks = { shape = [8, -8], block = [4, 4] }\n', "tasks.blocks.shape",
     r"entry 1 must be >= 0, got -8"),
    ('[job]\nkernel = "kmod:hits"\n[tasks]\nblocks = { shape = [8, 8], block = [0, 4] }\n', "tasks.blocks.block",
     r"entry 0 must be >= 1, got 0"),
    ('[job]\nkernel = "kmod:hits"\n[tasks]\nblocks = { shape = 8, block = [4] }\n', "tasks.blocks.shape",
     r"expected an array of integers, got integer 8"),
    ('[job]\nkernel = "kmod:hits"\n[tasks]\nblocks = { shape = [8] }\n', "tasks.blocks.block", r"missing required key"),
    ('[job]\nkernel = "kmod:hits"\n[tasks]\nblocks = { shape = [8], blok = [4] }\n', "tasks.blocks.blok",
     r"unknown key; did you mean 'block'\?"),
    ('[job]\nkernel = "kmod:hits"\n[tasks]\nlist = 3\n', "tasks.list", r"expected an array of payloads, got integer 3"),
    ('[job]\nkernel = "kmod:hits"\nop = "sum"\n[tasks]\nlist = []\n', "tasks.list",
     r"map_reduce needs at least one task; this gives none"),
    ('[job]\nkernel = "kmod:hits"\nop = "sum"\n[tasks]\nrange = { n = 0 }\n', "tasks.range.n",
     r"map_reduce needs at least one task"),
    ('[job]\nkernel = "kmod:hits"\nop = "sum"\n[tasks]\nblocks = { shape = [0, 4], block = [2, 2] }\n',
     "tasks.blocks.shape", r"map_reduce needs at least one task"),
]


@pytest.mark.parametrize("body, key, reason", ERRORS, ids=[f"{i}:{e[1]}" for i, e in enumerate(ERRORS)])
def test_validation_errors_name_the_key(tmp_path, body, key, reason):
    path = write_spec(tmp_path, body)
    with pytest.raises(JobSpecError) as info:
        load(path)
    err = info.value
    assert err.key == key
    prefix = f"{path}: {key}: "
    message = str(err)
    assert message.startswith(prefix), message
    assert re.fullmatch(reason + ".*", message[len(prefix):], flags=re.DOTALL), message


def test_empty_map_is_fine(tmp_path):
    spec = load(write_spec(tmp_path, '[job]\nkernel = "kmod:hits"\n[tasks]\nlist = []\n'))
    assert spec.build_tasks() == [] and spec.n_tasks == 0


MODULE_ERRORS = [
    ("raise RuntimeError('boom')\n", r"importing module 'kmod' failed: RuntimeError: boom \(at .*kmod.py:1\)"),
    ("def f(:\n", r"importing module 'kmod' failed: SyntaxError: "),
    ("import missing_dependency_xyz\n", r"importing module 'kmod' failed: ModuleNotFoundError: "
                                        r"No module named 'missing_dependency_xyz'"),
    ("import sys\nsys.exit(3)\n", r"importing module 'kmod' failed: SystemExit: 3"),
]


@pytest.mark.parametrize("module, reason", MODULE_ERRORS, ids=["raises", "syntax", "dependency", "exits"])
def test_kernel_module_that_fails_to_import(tmp_path, module, reason):
    path = write_spec(tmp_path, '[job]\nkernel = "kmod:f"\n[tasks]\nlist = [1]\n', module=module)
    with pytest.raises(JobSpecError, match=f"^{path}: job.kernel: {reason}"):
        load(path)


def test_file_level_errors(tmp_path):
    missing = tmp_path / "missing.toml"
    with pytest.raises(JobSpecError, match=f"^{missing}: no such file$"):
        load(missing)
    with pytest.raises(JobSpecError, match=f"^{tmp_path}: is a directory"):
        load(tmp_path)
    bad = write_spec(tmp_path, '[job]\nkernel = "kmod:hits\n', name="bad.toml")
    with pytest.raises(JobSpecError, match=f"^{bad}: invalid TOML: "):
        load(bad)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"[job]\nname = \"\xff\"\n")
    with pytest.raises(JobSpecError, match=f"^{binary}: not UTF-8 text"):
        load(binary)


def test_error_is_a_value_error_with_fields(tmp_path):
    path = write_spec(tmp_path, '[job]\nkernel = "kmod:hits"\npolcy = 1\n[tasks]\nlist = [1]\n')
    with pytest.raises(ValueError) as info:
        load(path)
    assert (info.value.path, info.value.key) == (str(path), "job.polcy")
    assert info.value.reason == "unknown key; did you mean 'policy'?"
    assert str(info.value) == f"{path}: job.polcy: unknown key; did you mean 'policy'?"


@pytest.mark.parametrize("body, key", [
    ("[job]\nkernel = 'kmod:hits'\n[tasks]\nrange = { n = 1e21 }\n", "tasks.range.n: expected an integer"),
    ("[job]\nkernel = 'kmod:hits'\n[tasks]\nrange = { n = 9223372036854775807 }\n", None),
    ("[job]\nkernel = 'kmod:hits'\n[tasks]\nblocks = { shape = [4294967296, 4294967296], block = [1, 1] }\n",
     "tasks.blocks.shape: gives 18446744073709551616 tasks, more than"),
])
def test_task_counts_beyond_64_bits_are_spec_errors(tmp_path, body, key):
    path = write_spec(tmp_path, body)
    if key is None:
        assert len(load(path).build_tasks()) == 2**63 - 1
        return
    with pytest.raises(JobSpecError, match=key):
        load(path)


def test_override_of_range_n_beyond_64_bits_is_a_spec_error(tmp_path):
    with pytest.raises(JobSpecError, match=r"tasks\.range\.n: gives 10{21} tasks, more than"):
        load(write_spec(tmp_path, MINIMAL), ["tasks.range.n=1000000000000000000000"])
