"""Progress on the master: a live bar on a terminal, a plain line in batch logs.

Tasks done out of the total known so far (spawned tasks included, so the total
can grow), rate and ETA. On a terminal the bar redraws in place (carriage
return) a few times a second; when stderr is not a terminal (a batch log) it
prints a plain line every ``every`` seconds, with no escape or control codes.
"""

from __future__ import annotations

import sys
import time

__all__ = ["Progress", "ENDINGS"]

# How a call ended -> the word of the final progress line.
ENDINGS = {"ok": "done in", "failed": "failed after", "preempted": "preempted after"}


class Progress:
    BAR_INTERVAL_S = 0.2
    WIDTH = 28

    def __init__(self, mode="auto", every: float = 30.0, stream=None, label: str = "hpcmicro"):
        self.stream = stream or sys.stderr
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = mode is True or mode == "auto" or mode == "lines"
        self.bar = tty and mode != "lines"
        self.interval = self.BAR_INTERVAL_S if self.bar else every
        self.label = label
        self.start = time.monotonic()
        self.last = self.start
        self.drawn = False

    def update(self, done: int, total: int, now: float | None = None) -> None:
        if not self.enabled:
            return
        now = time.monotonic() if now is None else now
        if now - self.last < self.interval:
            return
        self.last = now
        self._draw(done, total, now)

    def finish(self, done: int, total: int, ended: str = "ok") -> None:
        """The final line; ``ended`` says how the call ended: "ok" (done in), "failed" or "preempted"."""
        if ended not in ENDINGS:
            raise ValueError(f"ended must be one of {', '.join(ENDINGS)}, got {ended!r}")
        if self.enabled and (self.drawn or not self.bar):
            if self.bar or time.monotonic() - self.start >= self.interval:
                self._draw(done, total, time.monotonic(), final=True, ended=ended)

    def _draw(self, done, total, now, final=False, ended="ok") -> None:
        elapsed = max(now - self.start, 1e-9)
        rate = done / elapsed
        frac = done / total if total else 1.0
        eta = (total - done) / rate if rate > 0 and total > done else 0.0
        text = (f"{done}/{total} tasks ({frac * 100:.0f}%), {_rate(rate)}/s, "
                f"{ENDINGS[ended] if final else 'ETA'} {_clock(elapsed if final else eta)}")
        if self.bar:
            filled = int(self.WIDTH * min(frac, 1.0))
            line = f"\r{self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {text}"
            self.stream.write(line + ("\n" if final else ""))
        else:
            self.stream.write(f"{self.label}: {text}\n")
        self.stream.flush()
        self.drawn = True


def _rate(r: float) -> str:
    return f"{r / 1e6:.1f}M" if r >= 1e6 else f"{r / 1e3:.1f}k" if r >= 1e3 else f"{r:.1f}"


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
