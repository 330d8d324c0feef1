"""Threads kept between calls: a worker's mailbox thread is parked, not ended, when its call ends.

Starting a thread costs 60-100 us here (``threading.Thread.start`` waits for
the new thread to run), a tenth of a small call's whole cost on a worker
(docs/benchmarks.md, "Per-call latency"). A parked thread waits on a queue
for its next function; handing one over costs a few microseconds. Threads are
daemons, so parked ones never delay the interpreter's exit, and the pool
grows only to the number of mailboxes that ever ran at once (one per worker
rank; one per in-process worker).
"""

from __future__ import annotations

import queue
import threading
import traceback

__all__ = ["run_in_thread", "Running"]

_parked: list = []
_parked_lock = threading.Lock()


class Running:
    """A function running on a parked thread; ``join()`` waits for it to return."""

    __slots__ = ("_done",)

    def __init__(self, done: threading.Lock):
        self._done = done

    def join(self) -> None:
        with self._done:  # released by the thread when the function has returned
            pass


class _ParkedThread:
    def __init__(self, name: str):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._loop, name=name, daemon=True).start()

    def _loop(self) -> None:
        while True:
            fn, done = self._jobs.get()
            try:
                fn()
            except BaseException:  # noqa: BLE001  (as an ended thread would: shown, and the thread lives on)
                traceback.print_exc()
            finally:
                fn = None  # drop the call's objects before parking
                with _parked_lock:
                    _parked.append(self)  # parked before join() returns: the next call finds it
                done.release()


def run_in_thread(fn, name: str = "hpcmicro-mailbox") -> Running:
    """Run ``fn()`` on a parked thread (a new one if none is free); returns at once."""
    with _parked_lock:
        thread = _parked.pop() if _parked else None
    if thread is None:
        thread = _ParkedThread(name)
    done = threading.Lock()
    done.acquire()
    thread._jobs.put((fn, done))
    return Running(done)
