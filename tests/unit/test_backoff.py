"""Back-off: only yields during the spin after a message, then sleeps doubling up to the cap; reset starts over."""

import time

from hpcmicro.transport.base import Backoff


def test_yields_for_the_spin_then_doubles_to_the_cap_and_reset_starts_over():
    b = Backoff(tmax=8e-5, tmin=1e-5, spin_s=0.3)
    start = time.perf_counter()
    waits = []
    while time.perf_counter() - start < 0.01:  # well inside the spin: only yields
        waits.append(b.advance())
    assert waits and set(waits) == {0.0}
    time.sleep(0.3)  # the spin is over
    assert [b.advance() for _ in range(6)] == [1e-5, 2e-5, 4e-5, 8e-5, 8e-5, 8e-5]
    b.reset()
    assert b.advance() == 0.0


def test_without_a_spin_it_sleeps_at_once():
    b = Backoff(tmax=1e-4, tmin=2e-5, spin_s=0.0)
    assert [b.advance() for _ in range(4)] == [2e-5, 4e-5, 8e-5, 1e-4]
