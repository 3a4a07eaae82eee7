"""How the package uses a machine's cores: threads in the hot loops, processes for more cores.

torch's intra-op threads spin in OpenMP barriers while they wait for a core. The sweeps and
M-steps here are long loops of small operations, so on a machine where any other process is
busy, every step waits: issue 13 measured 30-100x slow-downs on a 2-core box with one other
CPU-bound process (``benchmarks/bench_threads.py`` reproduces it). So the hot loops run on
:data:`~pyro_ssl.config.DEFAULT_THREADS` (one) intra-op thread by default, and more cores are
used by processes (``pyro_ssl.fit(..., workers=N)``), which do not spin against each other.

The setting is process-wide and each hot loop restores the caller's torch setting when it
returns, so code around the package keeps whatever it chose.

:func:`run_shares` is the processes' half for work whose rows are independent (scoring
documents with the particle filter): each of ``N`` spawned processes computes one share of
the rows on one thread and the results come back in row order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import tempfile

import torch
import torch.multiprocessing as mp

from .config import DEFAULT_THREADS

__all__ = ["set_threads", "get_threads", "intra_op_threads", "hot_loop", "no_autograd", "run_shares"]

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


def no_autograd(fn):
    """Run ``fn`` under ``torch.inference_mode``: no autograd bookkeeping at all.

    The sweeps are long loops of small operations, and ``inference_mode`` skips the version
    counters and view tracking that ``no_grad`` still keeps: 5-7% of an E-step at the seed size
    (``docs/performance.md``). Tensors made in inference mode refuse in-place updates outside it,
    so the outermost call returns clones of them (nested calls pass them on as they are): what
    a caller gets is an ordinary tensor.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if torch.is_inference_mode_enabled():
            return fn(*args, **kwargs)
        with torch.inference_mode():
            out = fn(*args, **kwargs)
        return _ordinary(out)

    return wrapper


def _ordinary(obj):
    """``obj`` with every inference-mode tensor in it (tensors, tuples, lists, dicts, dataclass
    fields) replaced by an ordinary clone."""
    if isinstance(obj, torch.Tensor):
        return obj.clone() if obj.is_inference() else obj
    if isinstance(obj, tuple):
        items = [_ordinary(v) for v in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
    if isinstance(obj, list):
        return [_ordinary(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _ordinary(v) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            setattr(obj, f.name, _ordinary(getattr(obj, f.name)))
    return obj


def _share_worker(rank: int, fn, args: tuple, bounds: list, out_dir: str) -> None:
    torch.set_num_threads(1)  # processes are the cores: one thread each, none spinning
    lo, hi = bounds[rank]
    torch.save(fn(*args, lo, hi), os.path.join(out_dir, f"{rank}.pt"))


def run_shares(fn, args: tuple, bounds: list[tuple[int, int]]) -> list:
    """``[fn(*args, lo, hi) for (lo, hi) in bounds]``, each in its own spawned process.

    ``fn`` must be a module-level function (the processes import it) and its results tensors or
    plain containers of them. Starting the processes costs about two seconds here (each imports
    torch); a script that calls this needs the usual ``if __name__ == "__main__":`` guard. An
    exception in a process is raised here with that process's traceback.
    """
    with tempfile.TemporaryDirectory(prefix="pyro_ssl_shares_") as tmp:
        mp.spawn(_share_worker, args=(fn, args, list(bounds), tmp), nprocs=len(bounds), join=True)
        return [torch.load(os.path.join(tmp, f"{r}.pt"), map_location="cpu", weights_only=True)
                for r in range(len(bounds))]
