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
the rows on one thread and the results come back in row order. Starting processes costs about
two seconds (each imports torch), so inside :func:`kept_processes` the same processes serve
every call (a fit keeps them for its validation scores).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import traceback

import torch
import torch.multiprocessing as mp

from .config import DEFAULT_THREADS

__all__ = ["set_threads", "get_threads", "intra_op_threads", "hot_loop", "no_autograd", "run_shares",
           "kept_processes"]

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


def run_shares(fn, args: tuple, bounds: list[tuple[int, int]]) -> list:
    """``[fn(*args, lo, hi) for (lo, hi) in bounds]``, each in its own spawned process.

    ``fn`` must be a module-level function (the processes import it) and its results tensors or
    plain containers of them. Starting the processes costs about two seconds here (each imports
    torch), unless :func:`kept_processes` holds enough of them already; then those serve the
    call. A script that calls this needs the usual ``if __name__ == "__main__":`` guard. An
    exception in a process is raised here with that process's traceback.
    """
    if _kept is not None and len(bounds) <= len(_kept.conns):
        return _kept.run(fn, args, bounds)
    procs = _KeptProcesses(len(bounds))
    try:
        return procs.run(fn, args, bounds)
    finally:
        procs.close()


# ---------------------------------------------------------------------------- kept processes
def _dumps(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _kept_worker(conn) -> None:
    """Serve ``(fn, args, lo, hi)`` jobs until told to stop (``None``) or the parent goes away."""
    torch.set_num_threads(1)  # processes are the cores: one thread each, none spinning
    while True:
        try:
            job = conn.recv_bytes()
        except (EOFError, OSError):
            return
        fn, args, lo, hi = torch.load(io.BytesIO(job), weights_only=False)  # from our own parent
        if fn is None:
            return
        try:
            reply = ("ok", fn(*args, lo, hi))
        except BaseException:  # noqa: B036 - reported to the parent, which raises it
            reply = ("error", traceback.format_exc())
        conn.send_bytes(_dumps(reply))


class _KeptProcesses:
    """``n`` spawned processes, each waiting for jobs on its end of a pipe (:func:`kept_processes`)."""

    def __init__(self, n: int):
        ctx = mp.get_context("spawn")
        self.conns, self.procs = [], []
        try:
            for r in range(n):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_kept_worker, args=(child,), daemon=True, name=f"pyro_ssl-share-{r}")
                proc.start()
                child.close()
                self.conns.append(parent)
                self.procs.append(proc)
        except BaseException:
            self.close()
            raise

    def run(self, fn, args: tuple, bounds) -> list:
        sent = []
        for conn, (lo, hi) in zip(self.conns, bounds):
            try:
                conn.send_bytes(_dumps((fn, args, lo, hi)))
                sent.append(True)
            except OSError:  # the process has gone
                sent.append(False)
        # Every reply is read before anything is raised, so no stale reply is left in a pipe.
        replies = []
        for r, conn in enumerate(self.conns[: len(bounds)]):
            try:
                if not sent[r]:
                    raise EOFError
                replies.append(torch.load(io.BytesIO(conn.recv_bytes()), weights_only=False))
            except (EOFError, OSError):
                self.procs[r].join(timeout=1)
                replies.append(("died", f"process {r} ended (exit code {self.procs[r].exitcode})"))
        failed = [(r, text) for r, (status, text) in enumerate(replies) if status != "ok"]
        if failed:
            if any(status == "died" for status, _ in replies):
                self.close()  # a lost process: the others cannot cover its share
            r, text = failed[0]
            raise RuntimeError(f"share {r} failed in its process:\n{text}")
        return [value for _, value in replies]

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send_bytes(_dumps((None, None, None, None)))
            except (OSError, ValueError):
                pass
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join()
        for conn in self.conns:
            conn.close()
        self.conns, self.procs = [], []


_kept: _KeptProcesses | None = None


@contextlib.contextmanager
def kept_processes(workers: int):
    """Inside, :func:`run_shares` of up to ``workers`` shares (so ``workers=N`` scoring) reuses
    the same ``workers`` processes, started once here, instead of starting new ones per call.

    They start in the background (each imports torch, about two seconds) and wait on a pipe,
    using no CPU between calls; each holds an interpreter with torch loaded (a few hundred MB).
    ``workers <= 1`` starts nothing; inside another ``kept_processes`` the outer processes serve.
    ``fit`` keeps them for its validation scores when ``eval_workers > 1``.
    """
    global _kept
    if int(workers) <= 1 or _kept is not None:
        yield
        return
    kept = _KeptProcesses(int(workers))
    _kept = kept
    try:
        yield
    finally:
        _kept = None
        kept.close()
