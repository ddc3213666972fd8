#!/usr/bin/env python3
"""pipeplug.testing.FakePiped in a process of its own: prints its address, serves until SIGTERM."""

from __future__ import annotations

import signal
import sys
import threading

from pipeplug.testing import FakePiped

if __name__ == "__main__":
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with FakePiped() as fake:
        print(fake.address, flush=True)
        stop.wait()
    sys.exit(0)
