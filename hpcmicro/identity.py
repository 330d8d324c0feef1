"""Names for kernels and ops that are equal on every rank exactly when the calls are.

The runtime compares these names across ranks (a rank running other code, or
other parameters, is an error) and stores them in checkpoint identities (a
checkpoint of another job must not be resumed). So a name must

* never hold a memory address (it differs per process: ranks would falsely
  disagree), and
* change whenever bound state changes. ``repr`` is not enough: NumPy prints
  large arrays truncated (``[0, 1, 2, ..., 998, 999]``), so two arrays that
  differ in the middle would share a name. Bound state is digested from its
  pickle instead, which holds every byte.

Limitations. Sets and frozensets of strings pickle in hash order, which
differs per process (PYTHONHASHSEED). Sets among a partial's arguments or a
callable object's attributes, also inside tuples, lists and dicts there, are put
in a fixed order before digesting; sets inside other objects (a dataclass
argument's field, say) are not. Likewise equal values shared differently (one
array bound twice vs two copies) pickle differently. Either can only make equal
calls look different (a loud "ranks disagree" or "checkpoint belongs to a
different job"), never different calls look equal. Closures are named by their
function only: captured variables are not digested here. What the code does
(bytecode, captured values, module globals read) is digested separately for
checkpoints, by ``codehash.py``.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import pickle
import re

from .errors import InvalidCall

__all__ = ["describe_callable", "checkpoint_safe", "require_checkpoint_safe", "digest_value", "UNPICKLABLE"]

UNPICKLABLE = "#unpicklable"
_SET_TAG = "hpcmicro.identity:set"  # marks a canonicalised set, so it never digests like a tuple


def describe_callable(fn) -> str:
    """A name for ``fn`` that is the same on every rank running the same code and
    differs whenever its bound arguments or state differ."""
    return _describe(fn, [])


def checkpoint_safe(fn) -> str | None:
    """Why ``fn``'s name cannot identify a checkpointed job, or None if it can.

    A name built from an unpicklable repr may be equal for different bound
    arguments, so resuming by it could mix two jobs.
    """
    problems: list = []
    _describe(fn, problems)
    return f"bound state cannot be pickled ({'; '.join(problems)})" if problems else None


def require_checkpoint_safe(checkpoint, **callables) -> None:
    """Raise InvalidCall naming the first of ``callables`` (e.g. kernel=, op=)
    whose name cannot identify a checkpointed job."""
    for what, fn in callables.items():
        reason = checkpoint_safe(fn) if callable(fn) else None
        if reason:
            raise InvalidCall(f"checkpoint={checkpoint}: the {what}'s {reason}, so the checkpoint could not "
                              f"tell two parameter sets apart: bind picklable values, or run without a checkpoint")


def digest_value(value) -> str:
    """A digest of every byte of ``value``'s pickle (sets in order); of its address-free repr if unpicklable."""
    return _digest(value, "value", value, [])


def _describe(fn, problems: list) -> str:
    if isinstance(fn, functools.partial):
        bound = _digest((fn.args, sorted(fn.keywords.items())), "args", fn, problems)
        return f"partial({_describe(fn.func, problems)}, {bound})"
    if inspect.ismethod(fn) and not isinstance(fn.__self__, type):
        # A bound method's instance is bound state, like a partial's arguments.
        return f"{_describe(fn.__func__, problems)} of {_describe_instance(fn.__self__, problems)}"
    qualname = getattr(fn, "__qualname__", None)
    if isinstance(qualname, str):  # functions, classes, builtins; Batched sets its own
        return f"{getattr(fn, '__module__', '?')}.{qualname}"
    return _describe_instance(fn, problems)


def _describe_instance(obj, problems: list) -> str:
    cls = type(obj)
    name = getattr(obj, "__name__", None)  # e.g. a NumPy ufunc: numpy.ufunc[add]
    label = f"{cls.__module__}.{cls.__qualname__}" + (f"[{name}]" if isinstance(name, str) else "")
    return f"{label}({_digest(obj, 'state', obj, problems, instance=True)})"


def _digest(value, what: str, owner, problems: list, instance: bool = False) -> str:
    try:
        if instance:
            reduced = value.__reduce_ex__(4)
            # A string is a reference to a global (pickled by name); otherwise
            # digest the constructor arguments and state, sets in order.
            value = reduced if isinstance(reduced, str) else _canonical(tuple(reduced[1:3]))
        else:
            value = _canonical(value)
        digest = hashlib.sha256()
        # Stream the pickle into the hash: a bound array of gigabytes is not copied.
        pickle.Pickler(_HashWriter(digest), protocol=5).dump(value)
    except Exception as exc:
        problems.append(f"{what} of {_address_free(owner)}: {type(exc).__name__}: {exc}")
        return f"{what}{UNPICKLABLE}-{_sha(_address_free(value).encode())}"
    return f"{what}#{digest.hexdigest()[:16]}"


class _HashWriter:
    def __init__(self, digest):
        self.write = digest.update


def _canonical(obj):
    """``obj`` with the sets inside its tuples, lists and dicts in a fixed order."""
    t = type(obj)
    if t in (set, frozenset):
        items = [_canonical(x) for x in obj]
        return (_SET_TAG, t.__name__, tuple(sorted(items, key=lambda x: pickle.dumps(x, protocol=5))))
    if t in (tuple, list):
        return t(_canonical(x) for x in obj)
    if t is dict:
        return {_canonical(k): _canonical(v) for k, v in obj.items()}
    return obj


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _address_free(obj) -> str:
    try:
        text = repr(obj)
    except Exception:
        text = f"<{type(obj).__qualname__}>"
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)  # addresses differ per process
