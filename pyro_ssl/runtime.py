"""How many CPU threads the package's hot loops use.

torch's intra-op threads spin in OpenMP barriers while they wait for a core. The sweeps and
M-steps here are long loops of small operations, so on a machine where any other process is
busy, every step waits: issue 13 measured 30-100x slow-downs on a 2-core box with one other
CPU-bound process (``benchmarks/bench_threads.py`` reproduces it). So the hot loops run on
:data:`~pyro_ssl.config.DEFAULT_THREADS` (one) intra-op thread by default, and more cores are
used by processes (``pyro_ssl.fit(..., workers=N)``), which do not spin against each other.

The setting is process-wide and each hot loop restores the caller's torch setting when it
returns, so code around the package keeps whatever it chose.
"""

from __future__ import annotations

import contextlib
import functools

import torch

from .config import DEFAULT_THREADS

__all__ = ["set_threads", "get_threads", "intra_op_threads", "hot_loop"]

_threads: int | None = DEFAULT_THREADS


def set_threads(n: int | None) -> None:
    """Intra-op threads for the package's hot loops from now on (``None``: torch's own setting)."""
    global _threads
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"threads must be an integer >= 1 or None (torch's setting), got {n!r}")
    _threads = n


def get_threads() -> int | None:
    """The value :func:`set_threads` set (default :data:`~pyro_ssl.config.DEFAULT_THREADS`)."""
    return _threads


@contextlib.contextmanager
def intra_op_threads(n: int | None):
    """Temporarily set torch's intra-op CPU thread count (``None``: leave it alone)."""
    previous = torch.get_num_threads()
    if n is None or int(n) == previous:
        yield
        return
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def hot_loop(fn):
    """Run ``fn`` on :func:`get_threads` intra-op threads, restoring the caller's setting."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with intra_op_threads(_threads):
            return fn(*args, **kwargs)

    return wrapper
