"""hpcmicro: MPI microtask runtime with work stealing and deterministic reductions.

The public face only. Everything is imported lazily so that ``import hpcmicro``
stays cheap and, above all, does not initialize MPI (importing ``mpi4py.MPI``
does): a job script can import us before deciding how to launch.
"""

__version__ = "0.1.0"

__all__ = [
    "Runtime",
    "context",
    "Task",
    "Range",
    "Blocks",
    "TaskError",
    "Preempted",
    "InvalidCall",
    "CheckpointError",
    "__version__",
]

_LAZY = {
    "Runtime": "hpcmicro.runtime",
    "context": "hpcmicro.engine.context",
    "Task": "hpcmicro.engine.tasks",
    "Range": "hpcmicro.engine.tasks",
    "Blocks": "hpcmicro.engine.tasks",
    "TaskError": "hpcmicro.errors",
    "Preempted": "hpcmicro.errors",
    "InvalidCall": "hpcmicro.errors",
    "CheckpointError": "hpcmicro.io.checkpoint",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hpcmicro' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
