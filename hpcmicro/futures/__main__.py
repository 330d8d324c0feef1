"""``python -m hpcmicro.futures script.py [args]`` (or ``-m module``, ``-c command``) under mpiexec/srun.

Rank 0 runs the program as ``__main__``; every other rank imports the script
as ``__worker__`` (its ``if __name__ == "__main__":`` block does not run;
functions it defines can be unpickled) and serves tasks until the program
ends. Every MPIPoolExecutor the program makes submits to that one pool.
"""

from __future__ import annotations

import runpy
import sys

USAGE = ("usage: python -m hpcmicro.futures [--checkpoint FOLDER] [--task-timeout SECONDS] "
         "<script.py | -m module | -c command> [args...]\n"
         "  --checkpoint FOLDER       keep finished tasks' results there; a rerun does not compute them again\n"
         "  --task-timeout SECONDS    a task running longer goes to another worker (as Runtime(task_timeout=))")


def _target(argv: list) -> tuple[str, str, list]:
    if not argv or argv[0] in ("-h", "--help"):
        raise SystemExit(USAGE)
    if argv[0] in ("-m", "-c"):
        if len(argv) < 2:
            raise SystemExit(USAGE)
        kind, what, rest = argv[0], argv[1], argv[2:]
        return kind, what, [("-c" if kind == "-c" else what)] + rest
    return "path", argv[0], argv


def _run(kind: str, what: str, name: str):
    if kind == "path":
        sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(what)))
        return runpy.run_path(what, run_name=name)
    if kind == "-m":
        return runpy.run_module(what, run_name=name, alter_sys=True)
    return exec(compile(what, "<string>", "exec"), {"__name__": name})  # noqa: S102  (-c, as python -c)


def main(argv=None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    settings: dict = {}
    while args[:1] in (["--checkpoint"], ["--task-timeout"]):
        if len(args) < 2:
            raise SystemExit(USAGE)
        if args[0] == "--checkpoint":
            import os

            os.environ["HPCMICRO_FUTURES_CHECKPOINT"] = args[1]  # every executor's default
        else:
            try:
                settings["task_timeout"] = float(args[1])
            except ValueError:
                raise SystemExit(f"--task-timeout needs a number of seconds, got {args[1]!r}\n{USAGE}") from None
        args = args[2:]
    kind, what, script_argv = _target(args)
    import hpcmicro as hm

    from ._executor import _shared
    from ._pool import Pool, serve
    from ._workers import release_workers, split_workers

    rt = hm.Runtime(group_size=None, **settings).open()  # one master: no group masters in an open call
    workers = split_workers(rt.comm)
    sys.argv = script_argv
    if rt.comm.size == 1:  # nothing to serve: executors run on threads of this process
        release_workers(workers)
        rt.close()
        _run(kind, what, "__main__")
        return
    if rt.comm.rank == 0:
        pool = _shared["pool"] = Pool(rt)
        try:
            _run(kind, what, "__main__")
        finally:
            _shared.pop("pool", None)
            pool.close(wait=True, fetch_kept=False)  # the program is over: nobody asks for a result now
            rt.close()
            release_workers(workers)
        return
    if kind != "-c":  # what the program defines must be importable here, as under mpi4py
        import types

        module = types.ModuleType("__worker__")
        module.__dict__.update(_run(kind, what, "__worker__") or {})
        sys.modules["__main__"] = sys.modules["__worker__"] = module
    try:
        outcome = serve(rt)
    finally:
        rt.close()
        release_workers(workers)
    if outcome.error is not None:
        raise outcome.error


if __name__ == "__main__":
    main()
