"""A live entry count on stderr for long runs (only when stderr is a terminal)."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, prog: str, enabled: bool) -> None:
        self.prog = prog
        self.enabled = enabled and sys.stderr.isatty()
        self.start = time.monotonic()
        self.last = 0.0
        self.count = 0

    def update(self, count: int) -> None:
        self.count = count
        now = time.monotonic()
        if self.enabled and now - self.last >= 0.2:
            self.last = now
            rate = count / max(now - self.start, 1e-6)
            sys.stderr.write(f"\r{self.prog}: {count} entries ({rate:,.0f}/s)\x1b[K")
            sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write(f"\r{self.prog}: {self.count} entries in {time.monotonic() - self.start:.1f}s\x1b[K\n")
            sys.stderr.flush()
