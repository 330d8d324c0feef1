"""Parked threads (driver/parked.py): reused between calls, joined exactly, never lost to an error."""

import threading
import time

from hpcmicro.driver.parked import run_in_thread


def test_a_thread_is_reused_once_its_function_returned():
    seen = []
    run_in_thread(lambda: seen.append(threading.get_ident())).join()
    run_in_thread(lambda: seen.append(threading.get_ident())).join()
    assert len(seen) == 2 and seen[0] == seen[1] != threading.get_ident()


def test_join_waits_for_the_function_to_return():
    out = []
    running = run_in_thread(lambda: (time.sleep(0.2), out.append("done")))
    assert out == []
    running.join()
    assert out == ["done"]


def test_functions_running_at_once_get_their_own_threads():
    barrier = threading.Barrier(3, timeout=10)  # would time out if the two shared one thread
    idents = []

    def meet():
        idents.append(threading.get_ident())
        barrier.wait()

    a, b = run_in_thread(meet), run_in_thread(meet)
    barrier.wait()
    a.join()
    b.join()
    assert len(set(idents)) == 2


def test_an_exception_is_shown_and_the_thread_lives_on(capsys):
    def fail():
        raise ValueError("mailbox broke")

    run_in_thread(fail).join()
    assert "ValueError: mailbox broke" in capsys.readouterr().err
    out = []
    run_in_thread(lambda: out.append(1)).join()
    assert out == [1]
