"""The layering the architecture promises, checked on the code itself."""

import ast
import subprocess
import sys
from pathlib import Path

import hpcmicro

PACKAGE = Path(hpcmicro.__file__).parent
# What the pure engine may not reach, directly or lazily: MPI, HDF5, the kernel library,
# and every layer above it.
ENGINE_FORBIDDEN = ("mpi4py", "h5py", "cupy", "hpcmicro.kernels", "hpcmicro.mpi", "hpcmicro.io", "hpcmicro.driver",
                    "hpcmicro.transport", "hpcmicro.app", "hpcmicro.runtime")
# The protocol machines read no clock and start no thread: time is passed in with each event.
MACHINES = ("master.py", "worker.py", "events.py", "policies.py", "taskqueue.py", "cut.py")


def imported_modules(path: Path, package: str | None = None) -> set:
    """Every module a file imports, anywhere in it (function-level imports too), as absolute names.

    ``package``: the file's package (by default, from where it lies under hpcmicro/)."""
    if package is None:
        package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)
    return names


def test_engine_modules_import_nothing_above_them():
    offenders = {}
    for path in sorted((PACKAGE / "engine").glob("*.py")):
        bad = {m for m in imported_modules(path) if any(m == f or m.startswith(f + ".") for f in ENGINE_FORBIDDEN)}
        if bad:
            offenders[path.name] = sorted(bad)
    assert not offenders, f"the engine must stay pure: {offenders}"


def test_protocol_machines_read_no_clock_and_start_no_thread():
    for name in MACHINES:
        found = imported_modules(PACKAGE / "engine" / name)
        assert not found & {"time", "threading", "datetime"}, (name, sorted(found))


def test_importing_the_engine_loads_neither_mpi_nor_hdf5():
    code = ("import sys; import hpcmicro.engine.master, hpcmicro.engine.worker, hpcmicro.engine.executor, "
            "hpcmicro.engine.policies; "
            "print(sorted(m for m in ('mpi4py.MPI', 'h5py', 'hpcmicro.kernels', 'cupy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_import_checker_sees_lazy_imports(tmp_path):
    # The check above must be able to fail: a function-level import is found too.
    fake = tmp_path / "probe.py"
    fake.write_text("def f():\n    from ..mpi import signals\n    import h5py\n")
    found = imported_modules(fake, package="hpcmicro.engine")
    assert "hpcmicro.mpi.signals" in found and "h5py" in found


def test_the_simulator_runs_the_engine_without_mpi_drivers_or_transports():
    # It must drive the protocol machines itself, as the MPI driver does, on simulated time.
    forbidden = ("mpi4py", "h5py", "cupy", "hpcmicro.mpi", "hpcmicro.io", "hpcmicro.driver", "hpcmicro.transport",
                 "hpcmicro.runtime", "threading")
    offenders = {}
    for path in sorted((PACKAGE / "sim").glob("*.py")):
        bad = {m for m in imported_modules(path) if any(m == f or m.startswith(f + ".") for f in forbidden)}
        if bad:
            offenders[path.name] = sorted(bad)
    assert not offenders, offenders
