"""Waiting for something another process does: poll until it holds."""

from __future__ import annotations

import time

DEADLINE = 60.0  # seconds a poll may wait before the test fails; never a timing assertion


def poll(what, check, deadline: float = DEADLINE):
    """Call what() until check(value) holds; fail after `deadline` seconds."""
    until = time.monotonic() + deadline
    while True:
        value = what()
        if check(value):
            return value
        assert time.monotonic() < until, f"gave up waiting; last value: {value}"
        time.sleep(0.05)
