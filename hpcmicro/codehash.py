"""Digests of the code a kernel runs, so a checkpoint is never resumed by edited code.

A checkpoint names its kernel by ``module.function`` and bound arguments
(``identity.py``). That is not enough: a kernel edited from ``* 1`` to ``* 2``
between a preemption and the rerun keeps its name, and resuming would mix
results of the old and the new code. ``code_parts`` walks what a kernel runs
and digests each piece separately, so a mismatch can say what changed:

* the bytecode of every user function reached (the kernel, the functions and
  classes it reads as globals, the functions it captures or binds), with its
  constants and nested functions (lambdas, comprehensions, inner functions);
* their default arguments and captured (closure) values;
* every module-level value they read by name (``SCALE = 2``, a lookup table);
* the Python version, since bytecode differs between versions.

What it does not cover (documented in docs/fault-tolerance.md): code in the
standard library, in installed packages and in hpcmicro (named, not hashed:
they change with an upgrade, not an edit); values reached through an imported
module's attribute (``cfg.SCALE``: bind it, or ``from cfg import SCALE``);
globals a user function reads through ``globals()`` or ``getattr``; files and
environment variables it reads. Values that cannot be pickled are digested
from their address-free ``repr``.

Pure: no MPI. Costs a few microseconds per function, plus a pass over the
bytes of the module values read (streamed into the hash, never copied).
"""

from __future__ import annotations

import dis
import functools
import hashlib
import inspect
import os
import sys
import sysconfig
import types

__all__ = ["code_parts", "describe_changes"]

_PYTHON = "python version"


def code_parts(role: str, fn) -> dict[str, str]:
    """``{what: digest}`` for the code ``fn`` runs; ``role`` ("kernel", "op") starts every key."""
    walker = _Walker(role)
    walker.callable(fn)
    walker.parts[f"{role}: {_PYTHON}"] = "%d.%d" % sys.version_info[:2]
    return walker.parts


def describe_changes(stored: dict[str, str], current: dict[str, str]) -> str:
    """What differs between two ``code_parts`` results, worded for an error message."""
    changed = sorted(k for k in stored.keys() & current.keys() if stored[k] != current[k])
    words = []
    for key in changed:
        if key.endswith(_PYTHON):
            words.append(f"{key} {stored[key]} -> {current[key]}")
        else:
            words.append(f"{key} changed")
    words += [f"{k} is new" for k in sorted(current.keys() - stored.keys())]
    words += [f"{k} is gone" for k in sorted(stored.keys() - current.keys())]
    return "; ".join(words) if words else "nothing"


class _Walker:
    def __init__(self, role: str):
        self.role = role
        self.parts: dict[str, str] = {}
        self.seen: set[int] = set()  # ids of functions and classes already walked (recursion, shared helpers)

    def add(self, what: str, digest: str) -> None:
        self.parts[f"{self.role}: {what}"] = digest

    def callable(self, obj) -> None:
        if isinstance(obj, functools.partial):
            self.callable(obj.func)
            for arg in (*obj.args, *obj.keywords.values()):  # bound values are in the name; bound code is not
                if _is_code_carrier(arg):
                    self.callable(arg)
        elif inspect.ismethod(obj):
            self.callable(obj.__func__)
        elif isinstance(obj, types.FunctionType):
            self.function(obj)
        elif isinstance(obj, type):
            self.klass(obj)
        elif callable(obj) and not isinstance(obj, types.BuiltinFunctionType):
            # A callable object (a Batched kernel, a user class with __call__): its class's code and
            # the callables it holds. Its other state is digested in its name (identity.py).
            self.klass(type(obj))
            for value in getattr(obj, "__dict__", {}).values():
                if _is_code_carrier(value):
                    self.callable(value)

    def function(self, fn: types.FunctionType) -> None:
        if id(fn) in self.seen or _is_library(fn.__code__.co_filename):
            return
        self.seen.add(id(fn))
        name = f"{fn.__module__}.{fn.__qualname__}"
        code_digest, names_read = _code_info(fn.__code__)
        self.add(f"code of {name}", code_digest)
        if fn.__defaults__ or fn.__kwdefaults__:
            self.add(f"default arguments of {name}", _value_digest((fn.__defaults__, fn.__kwdefaults__)))
        for var, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
            try:
                value = cell.cell_contents
            except ValueError:  # a cell not yet filled (a function defined later in its parent)
                continue
            if _is_code_carrier(value):
                self.callable(value)
            else:
                self.add(f"captured variable {var} of {name}", _value_digest(value))
        namespace = fn.__globals__
        for var in names_read:
            if var not in namespace:
                continue  # a builtin, or a global not yet defined
            value = namespace[var]
            if isinstance(value, types.ModuleType):
                continue  # attributes reached through a module are not followed (see the module doc)
            if _is_code_carrier(value) or isinstance(value, type):
                self.callable(value)
            else:
                self.add(f"global {namespace.get('__name__', '?')}.{var}", _value_digest(value))

    def klass(self, cls: type) -> None:
        if id(cls) in self.seen or _class_is_library(cls):
            return
        self.seen.add(id(cls))
        for base in cls.__mro__[1:]:
            self.klass(base)
        for attr in vars(cls).values():
            if isinstance(attr, (staticmethod, classmethod)):
                attr = attr.__func__
            elif isinstance(attr, property):
                for accessor in (attr.fget, attr.fset, attr.fdel):
                    if isinstance(accessor, types.FunctionType):
                        self.function(accessor)
                continue
            if isinstance(attr, types.FunctionType):
                self.function(attr)


def _is_code_carrier(value) -> bool:
    return isinstance(value, (types.FunctionType, types.MethodType, functools.partial))


@functools.lru_cache(maxsize=4096)
def _is_library(filename: str | None) -> bool:
    """True for code that changes only with an install: the standard library, site-packages, hpcmicro."""
    if not filename:
        return True  # a builtin module
    if filename.startswith("<"):  # "<frozen posixpath>": the standard library; "<string>", "<stdin>": a user's
        return filename.startswith("<frozen ")
    path = os.path.realpath(filename)
    return any(path.startswith(root + os.sep) for root in _library_roots())


def _class_is_library(cls: type) -> bool:
    """Judged by where its methods were compiled (a class's module may not be importable by name)."""
    for attr in vars(cls).values():
        fn = getattr(attr, "__func__", getattr(attr, "fget", attr))
        if isinstance(fn, types.FunctionType):
            return _is_library(fn.__code__.co_filename)
    return True  # no Python methods of its own: nothing to digest here (its bases are walked apart)


@functools.lru_cache(maxsize=1)
def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots.add(os.path.dirname(os.path.abspath(__file__)))  # hpcmicro itself, also when installed editable
    return tuple(sorted(os.path.realpath(r) for r in roots))


@functools.lru_cache(maxsize=4096)
def _code_info(code: types.CodeType) -> tuple[str, tuple[str, ...]]:
    """(digest, sorted global names read) of ``code``: code objects are immutable, so this is cached."""
    return _code_digest(code), tuple(sorted(_globals_read(code)))


def _globals_read(code: types.CodeType) -> set[str]:
    """Names ``code`` and its nested code load from the module namespace."""
    names = set()
    for ins in dis.get_instructions(code):
        if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
            names.add(ins.argval)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _globals_read(const)
    return names


def _code_digest(code: types.CodeType) -> str:
    """The behaviour of ``code``: bytecode, constants, names, nested code. Not its file or line numbers,
    so moving a function within its file keeps its digest."""
    digest = hashlib.sha256()
    digest.update(code.co_code)  # the un-specialized bytecode, the same before and after warm-up
    digest.update(getattr(code, "co_exceptiontable", b""))
    digest.update(repr((code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags,
                        code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars)).encode())
    digest.update(repr(tuple(_const_key(c) for c in code.co_consts)).encode())
    return digest.hexdigest()[:16]


def _const_key(const):
    if isinstance(const, types.CodeType):
        return ("code", _code_digest(const))
    if isinstance(const, (tuple, frozenset)):
        keys = tuple(_const_key(c) for c in const)
        # A frozenset constant (``x in {"a", "b"}``) iterates in hash order, which differs per process.
        return (type(const).__name__, tuple(sorted(keys, key=repr)) if isinstance(const, frozenset) else keys)
    return (type(const).__name__, repr(const))


def _value_digest(value) -> str:
    from .identity import digest_value  # one digest rule for bound state and module values

    return digest_value(value)
