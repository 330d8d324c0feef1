"""Job specs: load and validate a TOML file describing one ``map`` or ``map_reduce``.

Everything here runs before MPI is touched (nothing imports ``mpi4py.MPI``),
so every rank of an ``mpiexec`` launch can validate the same spec on its own
and all of them fail alike, without a collective. The format is documented in
``docs/jobspec.md``; in short::

    [job]
    kernel = "pi_kernel:hits"     # module:function; the spec's folder is first on sys.path
    op = "sum"                    # -> map_reduce
    [job.args]
    samples = 100000
    [tasks]
    range = { n = 1000, chunk = 1 }

Every error is a ``JobSpecError`` whose message starts with the spec path and
the dotted key at fault, e.g. ``jobs/pi.toml: job.polcy: unknown key; did you
mean 'policy'?``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import inspect
import os
import re
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, NoReturn, Sequence, overload

from ..constants import DEVICES, OP_NAMES, POLICY_NAMES
from ..errors import InvalidCall
from ..options import Options

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["JobSpec", "JobSpecError", "load", "check_option", "CALLS", "TASK_SOURCES", "OPTION_DEFAULTS"]

CALLS = ("map", "map_reduce")
TASK_SOURCES = ("range", "blocks", "list")
# The Runtime options a spec may set, and the names each takes: a spec's value is
# checked against the same names, and by the same Options, as hm.Runtime's.
_SPEC_OPTIONS = {"policy": POLICY_NAMES, "device": DEVICES}

_TOP_KEYS = ("job", "tasks")
_JOB_KEYS = ("name", "kernel", "call", "op", "policy", "output", "args", "device", "setup", "finalize")
_RANGE_KEYS = ("n", "chunk")
_BLOCKS_KEYS = ("shape", "block")
_KERNEL_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class JobSpecError(ValueError):
    """A spec that cannot run. ``key`` is the dotted key at fault (None: the whole file)."""

    def __init__(self, path: str | os.PathLike, key: str | None, reason: str) -> None:
        self.path = str(path)
        self.key = key
        self.reason = reason
        super().__init__(f"{self.path}: {key}: {reason}" if key else f"{self.path}: {reason}")


@dataclass(frozen=True)
class JobSpec:
    """A validated job spec. ``function`` is the imported kernel, before ``args`` are bound."""

    path: Path
    text: str  # the TOML source, verbatim
    name: str
    kernel: str  # "module:function", as written
    function: Callable = field(repr=False)
    args: dict
    call: str  # "map" | "map_reduce"
    op: str | None  # None for map
    policy: str
    output: str  # as written (relative to the current directory) or overridden
    tasks_source: str  # "range" | "blocks" | "list"
    tasks_value: Any  # the table or array under [tasks], as written
    device: str = "auto"
    setup: Callable | None = field(default=None, repr=False)  # rank 0, before the call: setup(**args)
    # rank 0, after the output is written: finalize(result, path, **args); a str it returns is printed
    finalize: Callable | None = field(default=None, repr=False)

    def kernel_callable(self) -> Callable:
        """The kernel with ``[job.args]`` bound (a partial pickles, unlike a closure)."""
        return functools.partial(self.function, **self.args) if self.args else self.function

    def build_tasks(self) -> Any:
        """The tasks argument of the call: ``hm.Range``, ``hm.Blocks`` or a list of payloads."""
        from ..engine.tasks import Blocks, Range  # no MPI in there

        if self.tasks_source == "range":
            return Range(self.tasks_value["n"], self.tasks_value.get("chunk", 1))
        if self.tasks_source == "blocks":
            return Blocks(self.tasks_value["shape"], self.tasks_value["block"])
        return list(self.tasks_value)

    @property
    def n_tasks(self) -> int:
        """Root tasks the call starts with (spawned ones not counted)."""
        return _count_tasks(self.tasks_source, self.tasks_value)

    def with_overrides(self, policy: str | None = None, output: str | None = None,
                       device: str | None = None) -> "JobSpec":
        """The spec with command-line overrides applied (checked like the file's values)."""
        changes: dict[str, Any] = {}
        for name, value in (("device", device), ("policy", policy)):
            if value is not None:
                changes[name] = check_option(self.path, f"--{name}", name, value)
        if output is not None:
            if not output:
                raise JobSpecError(self.path, "--output", "must not be empty")
            changes["output"] = output
        return dataclasses.replace(self, **changes) if changes else self


# -- loading -------------------------------------------------------------------------------


def load(path: str | os.PathLike, overrides: Sequence[str] = ()) -> JobSpec:
    """Read, parse and validate the spec at ``path``; import its kernel. Raise JobSpecError.

    ``overrides``: ``"dotted.key=VALUE"`` strings (the CLI's ``--set``), VALUE
    in TOML syntax (a bare word is taken as a string), applied before checking.
    """
    path = Path(path)
    text = _read(path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise JobSpecError(path, None, f"invalid TOML: {exc}") from None
    for item in overrides:
        _apply_override(path, doc, item)
    if overrides:
        text += "\n# --set " + "\n# --set ".join(overrides) + "\n"
    return _Validator(path, text).validate(doc)


def _apply_override(path, doc: dict, item: str) -> None:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise JobSpecError(path, "--set", f"expected KEY=VALUE, got {item!r}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: a string
    parts = key.strip().split(".")
    table = doc
    for i, part in enumerate(parts[:-1]):
        table = table.setdefault(part, {})
        if not isinstance(table, dict):
            raise JobSpecError(path, "--set", f"{'.'.join(parts[:i + 1])} is not a table")
    table[parts[-1]] = value


def _read(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise JobSpecError(path, None, "no such file") from None
    except IsADirectoryError:
        raise JobSpecError(path, None, "is a directory, not a spec file") from None
    except OSError as exc:
        raise JobSpecError(path, None, f"cannot read: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JobSpecError(path, None, f"not UTF-8 text (TOML must be): {exc}") from None


class _Validator:
    """Checks one parsed document; ``fail`` raises the first problem found."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.text = text

    def fail(self, key: str | None, reason: str) -> NoReturn:
        raise JobSpecError(self.path, key, reason)

    # -- generic checks --------------------------------------------------------------------
    def known_keys(self, table: dict, valid, prefix: str) -> None:
        for key in table:
            if key not in valid:
                self.fail(_join(prefix, key), "unknown key; " + _suggest(key, valid))

    def table(self, parent: dict, key: str, prefix: str, required: bool) -> dict:
        """``parent[key]``, a table; an optional one that is absent reads as empty."""
        dotted = _join(prefix, key)
        if key not in parent:
            if required:
                self.fail(dotted, "missing required table")
            return {}
        value = parent[key]
        if not isinstance(value, dict):
            self.fail(dotted, f"expected a table, got {_describe(value)}")
        return value

    @overload
    def string(self, table: dict, key: str, prefix: str, required: Literal[True]) -> str: ...
    @overload
    def string(self, table: dict, key: str, prefix: str, required: bool = False) -> str | None: ...

    def string(self, table: dict, key: str, prefix: str, required: bool = False) -> str | None:
        dotted = _join(prefix, key)
        if key not in table:
            if required:
                self.fail(dotted, "missing required key")
            return None
        value = table[key]
        if not isinstance(value, str):
            self.fail(dotted, f"expected a string, got {_describe(value)}")
        if not value:
            self.fail(dotted, "must not be empty")
        return value

    def integer(self, table: dict, key: str, prefix: str, minimum: int, default=None) -> int:
        dotted = _join(prefix, key)
        if key not in table:
            if default is None:
                self.fail(dotted, "missing required key")
            return default
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(dotted, f"expected an integer, got {_describe(value)}")
        if value < minimum:
            self.fail(dotted, f"must be >= {minimum}, got {value}")
        return value

    def int_array(self, table: dict, key: str, prefix: str, minimum: int) -> list:
        dotted = _join(prefix, key)
        if key not in table:
            self.fail(dotted, "missing required key")
        value = table[key]
        if not isinstance(value, list):
            self.fail(dotted, f"expected an array of integers, got {_describe(value)}")
        if not value:
            self.fail(dotted, "must have at least one entry")
        for i, v in enumerate(value):
            if isinstance(v, bool) or not isinstance(v, int):
                self.fail(dotted, f"entry {i} must be an integer, got {_describe(v)}")
            if v < minimum:
                self.fail(dotted, f"entry {i} must be >= {minimum}, got {v}")
        return value

    def choice(self, table: dict, key: str, prefix: str, choices, default):
        value = self.string(table, key, prefix)
        if value is None:
            return default
        if value not in choices:
            self.fail(_join(prefix, key), _bad_choice(key, value, choices))
        return value

    def option(self, table: dict, name: str) -> str:
        """``job.<name>``, a Runtime option: its default and checks are Options' own."""
        value = self.string(table, name, "job")
        if value is None:
            return OPTION_DEFAULTS[name]
        return check_option(self.path, f"job.{name}", name, value)

    # -- the document ----------------------------------------------------------------------
    def validate(self, doc: dict) -> JobSpec:
        self.known_keys(doc, _TOP_KEYS, "")
        job = self.table(doc, "job", "", required=True)
        tasks = self.table(doc, "tasks", "", required=True)
        self.known_keys(job, _JOB_KEYS, "job")

        name = self.string(job, "name", "job")
        if name is None:
            name = self.path.stem
        elif name in (".", "..") or any(c in name for c in "/\\\0"):
            self.fail("job.name", f"must not contain path separators, got {name!r}")
        kernel = self.string(job, "kernel", "job", required=True)
        if not _KERNEL_RE.match(kernel):
            self.fail("job.kernel", f"expected 'module:function', got {kernel!r}")
        op = self.choice(job, "op", "job", OP_NAMES, None)
        call = self.choice(job, "call", "job", CALLS, "map_reduce" if op is not None else "map")
        if call == "map" and op is not None:
            self.fail("job.op", "only applies to call = 'map_reduce' (this job's call is 'map')")
        if call == "map_reduce" and op is None:
            op = "sum"  # as Runtime.map_reduce
        policy = self.option(job, "policy")
        output = self.string(job, "output", "job")
        if output is None:
            output = f"{name}.h5"
        args = self.table(job, "args", "job", required=False)
        for key in args:
            if not key.isidentifier():
                self.fail(f"job.args.{_quote_key(key)}", "not a valid Python keyword argument name")

        source, value = self.task_source(tasks)
        if call == "map_reduce" and _count_tasks(source, value) == 0:
            where = {"range": "tasks.range.n", "blocks": "tasks.blocks.shape", "list": "tasks.list"}[source]
            self.fail(where, "map_reduce needs at least one task; this gives none")

        device = self.option(job, "device")
        function = self.import_kernel(kernel)
        self.check_arguments(kernel, function, args)
        hooks = {}
        for hook in ("setup", "finalize"):
            ref = self.string(job, hook, "job")
            if ref is not None:
                if not _KERNEL_RE.match(ref):
                    self.fail(f"job.{hook}", f"expected 'module:function', got {ref!r}")
                hooks[hook] = self.import_kernel(ref, key=f"job.{hook}")
        return JobSpec(self.path, self.text, name, kernel, function, dict(args), call, op, policy,
                       output, source, value, device, hooks.get("setup"), hooks.get("finalize"))

    def task_source(self, tasks: dict):
        self.known_keys(tasks, TASK_SOURCES, "tasks")
        given = [k for k in TASK_SOURCES if k in tasks]
        if len(given) != 1:
            reason = "no task source" if not given else "more than one task source (" + ", ".join(given) + ")"
            self.fail("tasks", f"{reason}; give exactly one of {', '.join(TASK_SOURCES)}")
        source = given[0]
        if source == "list":
            value = tasks["list"]
            if not isinstance(value, list):
                self.fail("tasks.list", f"expected an array of payloads, got {_describe(value)}")
            return source, value
        table = self.table(tasks, source, "tasks", required=True)
        prefix = f"tasks.{source}"
        if source == "range":
            self.known_keys(table, _RANGE_KEYS, prefix)
            self.integer(table, "n", prefix, minimum=0)
            self.integer(table, "chunk", prefix, minimum=1, default=1)
        else:
            self.known_keys(table, _BLOCKS_KEYS, prefix)
            shape = self.int_array(table, "shape", prefix, minimum=0)
            block = self.int_array(table, "block", prefix, minimum=1)
            if len(shape) != len(block):
                self.fail(f"{prefix}.block", f"has {len(block)} entries but shape has {len(shape)}; "
                                             "give one block size per dimension")
        from ..engine.tasks import MAX_TASKS  # no MPI in there

        count = _count_tasks(source, table)
        if count > MAX_TASKS:
            where = f"{prefix}.n" if source == "range" else f"{prefix}.shape"
            self.fail(where, f"gives {count} tasks, more than the {MAX_TASKS} (2**63 - 1) a call can hold")
        return source, table

    # -- the kernel ------------------------------------------------------------------------
    def import_kernel(self, kernel: str, key: str = "job.kernel") -> Callable:
        try:
            return self._import(kernel)
        except JobSpecError as exc:
            if key == "job.kernel":
                raise
            raise JobSpecError(self.path, key, exc.reason) from None

    def _import(self, kernel: str) -> Callable:
        module_name, _, attr_path = kernel.partition(":")
        folder = str(self.path.resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        importlib.invalidate_caches()  # the folder may be new, or written to since the last import
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
                self.fail("job.kernel", f"no module named {exc.name!r} (searched {folder} first, then sys.path)")
            self.fail("job.kernel", f"importing module {module_name!r} failed: {_explain(exc)}")
        except BaseException as exc:  # a module that raises, even SystemExit, must not kill a rank silently
            if isinstance(exc, KeyboardInterrupt):
                raise
            self.fail("job.kernel", f"importing module {module_name!r} failed: {_explain(exc)}")
        obj: Any = module
        for i, part in enumerate(attr_path.split(".")):
            if not hasattr(obj, part):
                owner = module_name + "".join("." + p for p in attr_path.split(".")[:i])
                names = [n for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n, None))]
                self.fail("job.kernel", f"{owner!r} has no attribute {part!r}; " + _suggest(part, names))
            obj = getattr(obj, part)
        if not callable(obj):
            self.fail("job.kernel", f"{kernel!r} is not callable (it is {_describe(obj)})")
        return obj

    def check_arguments(self, kernel: str, function: Callable, args: dict) -> None:
        """The kernel must take the payload positionally plus ``args`` as keywords."""
        try:
            sig = inspect.signature(function)
        except (TypeError, ValueError):
            return  # a builtin without a signature: nothing to check here
        params = sig.parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        keywords = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not takes_any:
            for key in args:
                if key not in keywords:
                    self.fail(f"job.args.{key}", f"not a keyword argument of {kernel}; " + _suggest(key, keywords))
        try:
            sig.bind(object(), **args)
        except TypeError as exc:
            payload_ok = True
            try:
                sig.bind_partial(object())
            except TypeError:
                payload_ok = False
            if not payload_ok:
                self.fail("job.kernel", f"{kernel} must take the task payload as its first positional argument")
            missing = [n for n, p in params.items() if p.default is p.empty and p.kind is p.KEYWORD_ONLY
                       and n not in args]
            if missing:
                self.fail(f"job.args.{missing[0]}", f"missing required key (a required argument of {kernel})")
            self.fail("job.args", f"cannot call {kernel}(payload, **args): {exc}")


# -- helpers -------------------------------------------------------------------------------

# The Runtime options' defaults, as Options defines them: for the spec, the CLI and the batch scripts.
# (inprocess_workers has none to give: Options reads it from the environment when it is built.)
OPTION_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(Options)
                                   if f.default is not dataclasses.MISSING}


def check_option(path: str | os.PathLike, key: str, name: str, value: str) -> str:
    """``value`` for Runtime option ``name``, as the spec (or the flag) ``key`` gives it; JobSpecError if bad.

    An unknown name gets the spec's message (the choices, a close match); any
    other rule is Options', so the spec refuses what hm.Runtime would.
    """
    if value not in _SPEC_OPTIONS[name]:
        raise JobSpecError(path, key, _bad_choice(name, value, _SPEC_OPTIONS[name]))
    given: dict[str, Any] = {name: value}
    try:
        Options(**given)
    except InvalidCall as exc:
        raise JobSpecError(path, key, str(exc)) from None
    return value


def _count_tasks(source: str, value) -> int:
    if source == "range":
        n, chunk = value["n"], value.get("chunk", 1)
        return -(-n // chunk)
    if source == "blocks":
        count = 1
        for s, b in zip(value["shape"], value["block"]):
            count *= -(-s // b)
        return count
    return len(value)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{_quote_key(key)}" if prefix else _quote_key(key)


def _quote_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else '"' + key.replace('"', '\\"') + '"'


def _suggest(word: str, valid) -> str:
    close = difflib.get_close_matches(word, list(valid), n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    valid = sorted(valid)
    if not valid:
        return "there are none"
    return "valid keys: " + ", ".join(valid) if len(valid) <= 12 else "no close match"


def _bad_choice(what: str, value: str, choices) -> str:
    text = f"unknown {what} {value!r}; use one of {', '.join(choices)}"
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f"{text} (did you mean {close[0]!r}?)" if close else text


_TOML_TYPES = ((bool, "boolean"), (int, "integer"), (float, "float"), (str, "string"),
               (list, "array"), (dict, "table"))


def _describe(value) -> str:
    for typ, name in _TOML_TYPES:
        if isinstance(value, typ):
            if typ in (list, dict):
                return name
            return f"{name} {value!r}"
    return type(value).__name__


def _explain(exc: BaseException) -> str:
    """One line for an exception: type, message and where (the innermost frame), no traceback."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SyntaxError):
        return text
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        text += f" (at {last.filename}:{last.lineno})"
    return text
