"""Data-parallel fitting on ``torch.distributed``: process groups, shards, the launcher.

The learning loop is :class:`~pyro_ssl.infer.em.StochasticEM`, the same one
:meth:`pyro_ssl.SSL.fit` runs. Here each rank holds a contiguous shard of the documents
(:meth:`OnDiskCorpus.shard <pyro_ssl.data.ondisk.OnDiskCorpus.shard>` or a block of an
in-memory corpus) and a :class:`DistContext`, the reducer that sums count changes, gradients
and statistics over ranks with ``all_reduce``. Every random choice is keyed by document
(:mod:`pyro_ssl.smc.uniforms`), so a fit on ``W`` processes gives the same topic paths,
counts and ``phi`` as ``SSL.fit`` with the same seed, and LSTM weights equal up to the order
of floating-point gradient sums (``tests/test_distributed.py``).

Rank 0 alone writes checkpoints (the same format as ``SSL.fit``'s, loaded with
``weights_only=True``) and logs; a checkpoint stores the global topic paths, so a run of any
world size resumes from it.

Launch::

    # write an on-disk corpus once
    python -m pyro_ssl.distributed --data aclImdb_v1.tar.gz --vocab-size 5000 --prepare imdb_disk
    # 2 processes on this machine (gloo on CPU; nccl and one GPU per process with CUDA)
    torchrun --nproc_per_node=2 -m pyro_ssl.distributed --data imdb_disk -K 50 --epochs 30 \\
        --out imdb_model --checkpoint-dir ckpt
    # the same without torchrun: world size 1
    python -m pyro_ssl.distributed --data imdb_disk -K 50 --epochs 30 --out imdb_model

or call :func:`fit_distributed` from processes started by ``torch.multiprocessing.spawn``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from .config import add_setting_flags, check_bool, check_device, check_dir, check_int, chosen_settings
from .data import Corpus, load_corpus
from .data.ondisk import OnDiskCorpus, is_ondisk_corpus, write_ondisk
from .data.shard import TokenShard, shard_bounds
from .estimator import SSL, _check_eval_data
from .infer.em import StochasticEM
from .infer.stopping import EarlyStopping
from .infer.reduce import Reducer

__all__ = ["DistContext", "DistributedFit", "SharedSums", "fit_distributed", "fit_workers", "init_distributed", "leave_worker",
           "main", "build_parser"]


# ---------------------------------------------------------------------------- process group
class SharedSums:
    """All-reduce for the processes of one machine: slots in shared memory and one barrier.

    Each rank copies its tensor into its slot, waits at a barrier (one byte over a pipe to rank 0
    and back), then adds every slot in rank order, so every rank holds the same bits. The exact
    E-step meets after every block and the M-step after every gradient step; a gloo all-reduce
    over localhost takes over a millisecond whatever its size, this about a pipe round trip
    (``benchmarks/bench_distributed.py`` prints both). Two slot sets used in turn mean a rank
    never overwrites a slot another rank may still read: before writing set ``k`` again, every
    rank has passed the barrier of the call in between, so has finished reading set ``k``.

    Made once by the launching process (:func:`fit_workers`) and handed to each process it
    starts, which calls :meth:`for_rank`. Tensors larger than ``capacity`` bytes, on another
    device or not contiguous go through the process group instead (:meth:`reduce` returns
    ``False``), which every rank decides alike since all pass the same shapes.
    """

    def __init__(self, workers: int, capacity: int | None = None):
        # 4 MiB a slot holds K x V float64 counts up to 50 x 10,000; 32 MiB in all at most, as a
        # container's /dev/shm can be 64 MiB.
        capacity = min(4 << 20, (32 << 20) // (2 * int(workers))) if capacity is None else int(capacity)
        self.workers, self.capacity, self.rank = int(workers), capacity // 8 * 8, None
        self.slots = torch.zeros(2, self.workers, self.capacity, dtype=torch.uint8).share_memory_()
        ctx = mp.get_context("spawn")
        self._pipes = [ctx.Pipe() for _ in range(self.workers - 1)]  # rank 0's end, rank r's end
        self._calls = 0

    def for_rank(self, rank: int) -> "SharedSums":
        """This process's view (rank ``rank``); it keeps only its own pipe ends."""
        self.rank = int(rank)
        if self.rank == 0:
            self._ends = [hub for hub, _ in self._pipes]
        else:
            self._ends = [self._pipes[self.rank - 1][1]]
        self._pipes = None
        return self

    def close_parent_ends(self) -> None:
        """Called in the launcher once the processes started: its copies of the pipes are closed,
        so a rank that dies ends the others' waits (end of file) instead of hanging them."""
        for a, b in self._pipes:
            a.close()
            b.close()

    def _barrier(self) -> None:
        if self.rank == 0:
            for end in self._ends:
                end.recv_bytes()
            for end in self._ends:
                end.send_bytes(b"")
        else:
            self._ends[0].send_bytes(b"")
            self._ends[0].recv_bytes()

    def reduce(self, t: torch.Tensor, op: str = "sum") -> bool:
        """``t`` (CPU, contiguous, at most ``capacity`` bytes) replaced by its sum (or ``"max"``)
        over ranks; ``False`` (``t`` untouched) when it does not fit here."""
        nbytes = t.numel() * t.element_size()
        if t.device.type != "cpu" or not t.is_contiguous() or nbytes > self.capacity or t.dtype == torch.bool:
            return False
        if nbytes == 0:
            return True
        slots = self.slots[self._calls % 2, :, :nbytes]
        self._calls += 1
        slots[self.rank].view(t.dtype).copy_(t.view(-1))
        self._barrier()
        out = slots[0].view(t.dtype).clone()
        for r in range(1, self.workers):
            if op == "sum":
                out += slots[r].view(t.dtype)
            else:
                torch.maximum(out, slots[r].view(t.dtype), out=out)
        t.view(-1).copy_(out)
        return True


@dataclass
class DistContext(Reducer):
    """Where this process stands (rank, world size, device), and the reducer over the group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None
    owns_group: bool = False
    seconds: float = 0.0  # time spent in collectives
    shared: SharedSums | None = None  # one machine's processes: sums in shared memory
    calls: list = field(default_factory=lambda: [0, 0])  # sums through shared memory, through the group

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def _collective(self, t: torch.Tensor, fn, op: str | None = None) -> torch.Tensor:
        if not self.active:
            return t
        t0 = time.perf_counter()
        if op is not None and self.shared is not None and self.shared.reduce(t, op):
            self.calls[0] += 1
        else:
            # nccl reduces device tensors only; gloo host ones too.
            buf = t.to(self.device) if self.backend == "nccl" and t.device != self.device else t
            fn(buf)
            if buf is not t:
                t.copy_(buf)
            self.calls[1] += 1
        self.seconds += time.perf_counter() - t0
        return t

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        return self._collective(t, lambda b: dist.all_reduce(b, op=dist.ReduceOp.SUM), "sum")

    def max(self, t: torch.Tensor) -> torch.Tensor:
        return self._collective(t, lambda b: dist.all_reduce(b, op=dist.ReduceOp.MAX), "max")

    def broadcast(self, t: torch.Tensor, src: int = 0) -> torch.Tensor:
        return self._collective(t, lambda b: dist.broadcast(b, src))

    def gather_flat(self, t: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        if not self.active:
            return t
        buf = torch.zeros(max(sizes), dtype=t.dtype, device=self.device)
        buf[: t.numel()] = t.to(self.device)
        out = [torch.zeros_like(buf) for _ in range(self.world_size)]
        t0 = time.perf_counter()
        dist.all_gather(out, buf)
        self.seconds += time.perf_counter() - t0
        return torch.cat([o[:n] for o, n in zip(out, sizes)])

    def barrier(self) -> None:
        if self.active:
            if self.backend == "nccl":
                dist.barrier(device_ids=[self.device.index or 0])
            else:
                dist.barrier()


def init_distributed(
    rank: int | None = None,
    world_size: int | None = None,
    *,
    backend: str | None = None,
    init_method: str | None = None,
    device: str | torch.device | None = None,
) -> DistContext:
    """Join (or create) the default process group; world size 1 needs none.

    ``rank``/``world_size`` default to torchrun's ``RANK``/``WORLD_SIZE`` (1 when unset) and
    ``init_method`` to ``env://`` (``MASTER_ADDR``/``MASTER_PORT``). The device defaults to
    ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU; the backend to ``nccl`` on CUDA
    and ``gloo`` on the CPU.
    """
    if dist.is_available() and dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
        owns = False
    else:
        rank = int(os.environ.get("RANK", 0)) if rank is None else int(rank)
        world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else int(world_size)
        owns = world_size > 1
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if device is None:
        device = torch.device(f"cuda:{local_rank % torch.cuda.device_count()}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device} requested but CUDA is not available on this machine")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank % torch.cuda.device_count()}")
        torch.cuda.set_device(device)
    if backend is None:
        backend = "nccl" if device.type == "cuda" else "gloo"
    if owns:
        kwargs = {"device_id": device} if backend == "nccl" else {}
        dist.init_process_group(backend, init_method=init_method or "env://", rank=rank, world_size=world_size, **kwargs)
    elif world_size > 1:
        backend = dist.get_backend()
    return DistContext(rank, world_size, local_rank, device, backend if world_size > 1 else None, owns)


# ---------------------------------------------------------------------------- data shards
def _open_data(data, vocab_size: int | None = None):
    """``data`` -> a corpus with ``lengths``/``V``/``vocab`` (paths: an on-disk corpus or anything
    :func:`~pyro_ssl.data.load_corpus` reads; every rank then reads the whole file)."""
    if isinstance(data, (str, os.PathLike)):
        data = OnDiskCorpus.open(data) if is_ondisk_corpus(data) else load_corpus(data, vocab_size=vocab_size or 5000)
    if isinstance(data, (OnDiskCorpus, Corpus)):
        return data
    if isinstance(data, tuple) and len(data) == 2 and torch.is_tensor(data[0]):
        tokens, lengths = data
        return Corpus([tokens[i, : int(n)] for i, n in enumerate(lengths)], vocab_size=vocab_size)
    return Corpus(data, vocab_size=vocab_size)


def _shard(corpus, rank: int, world_size: int, V: int, device):
    """This rank's documents: an on-disk shard (read batch by batch) or a block held as tensors."""
    if isinstance(corpus, OnDiskCorpus):
        return corpus.shard(rank, world_size)
    lo, hi = shard_bounds(len(corpus), rank, world_size)
    tokens, lengths = corpus[lo:hi].padded()
    return TokenShard(tokens.to(device), lengths.to(device), start=lo, V=V)


# ---------------------------------------------------------------------------- user entry
@dataclass
class DistributedFit:
    """Result of :func:`fit_distributed` on one rank.

    Attributes:
        ssl: the fitted :class:`~pyro_ssl.SSL` (identical on every rank).
        em: the rank's :class:`~pyro_ssl.infer.em.StochasticEM` (counts, this shard's paths).
        history: per-epoch entries (identical on every rank; rank 0 logs them).
        paths: all documents' paths, flat in global token order (with ``return_paths``).
        offsets: ``(D + 1,)`` global offsets into ``paths``.
    """

    ssl: SSL
    em: StochasticEM
    history: list
    rank: int
    world_size: int
    paths: torch.Tensor | None = None
    offsets: torch.Tensor | None = None

    @property
    def counts(self) -> torch.Tensor:
        return self.em.counts

    def path_list(self) -> list[list[int]]:
        """Per-document topic paths (needs ``return_paths=True``)."""
        off = self.offsets.tolist()
        flat = self.paths.tolist()
        return [flat[a:b] for a, b in zip(off[:-1], off[1:])]


def _epoch_logger(ctx: DistContext, log, progress: bool, ssl: SSL, eval_data=None, eval_every: int = 1,
                  eval_particles: int = 100):
    """The estimator's epoch hook (record, checkpoint) with rank 0's log line and JSON log as its callback."""

    last = [0.0, 0, 0]  # the totals at the previous epoch's end: the entry gets this epoch's share

    def report(_, entry: dict) -> bool:
        now = [ctx.seconds, *ctx.calls]
        entry["comm_seconds"], entry["comm_calls_shared"], entry["comm_calls_group"] = \
            (x - y for x, y in zip(now, last))
        last[:] = now
        if ctx.is_main and log is not None:
            Path(log).parent.mkdir(parents=True, exist_ok=True)
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry) + "\n")
        if ctx.is_main and progress:
            print(f"epoch {entry['epoch']:3d}  logp/tok {entry['log_joint_per_token']:.4f}  {entry['seconds']:.2f}s "
                  f"({entry['docs_per_second']:.1f} docs/s, comm {entry['comm_seconds']:.2f}s)  world {ctx.world_size}", flush=True)
        return False

    return ssl._epoch_hook(eval_data, eval_every, eval_particles, report)


def fit_distributed(
    data,
    K: int | None = None,
    epochs: int | None = None,
    *,
    rank: int | None = None,
    world_size: int | None = None,
    backend: str | None = None,
    init_method: str | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    vocab_size: int | None = None,
    checkpoint_dir=None,
    resume: bool = False,
    out=None,
    log=None,
    progress: bool = False,
    return_paths: bool = False,
    shared: SharedSums | None = None,
    eval_data=None,
    eval_every: int = 1,
    eval_particles: int = 100,
    **settings,
) -> DistributedFit:
    """Fit a Topical SSL data-parallel over ``world_size`` processes (or 1).

    Call it in every process (torchrun, or ``torch.multiprocessing.spawn`` with ``rank``,
    ``world_size`` and ``init_method``); each process sweeps only its shard of ``data``.

    Args:
        data: an on-disk corpus directory (:mod:`pyro_ssl.data.ondisk`) or object, a
            :class:`~pyro_ssl.data.Corpus`, token-id sequences, or any path
            :func:`~pyro_ssl.data.load_corpus` reads.
        K, epochs, **settings: as for :class:`~pyro_ssl.SSL` (``init="hmm"`` is one-process only).
        rank, world_size, backend, init_method, device: see :func:`init_distributed`.
        checkpoint_dir, resume: as for :meth:`SSL.fit` (rank 0 writes; any world size resumes).
        out: rank 0 saves the fitted model there (:meth:`SSL.save`).
        log: rank 0 appends one JSON line per epoch to this file.
        progress: rank 0 prints one line per epoch.
        return_paths: gather every document's path onto every rank at the end.
        shared: this rank's :class:`SharedSums` when every process runs on this machine
            (:func:`fit_workers` passes it): the frequent small sums then skip the network.
        eval_data, eval_every, eval_particles: a validation set, as for :meth:`SSL.fit`: every
            rank scores an even share of its documents and the sums are summed, so every rank
            records the same value and early stopping (``patience``) takes the same decision
            on every rank (each restores its own shard's best state).
    """
    if K is not None:
        settings["K"] = K
    ssl = SSL(dtype=dtype, **settings)  # validates every setting before any process group exists
    epochs = None if epochs is None else check_int("epochs", epochs, 1)
    check_bool("resume", resume)
    vocab_size = None if vocab_size is None else check_int("vocab_size", vocab_size, 1)
    if device is not None:
        check_device(device)
    for name, d in (("checkpoint_dir", checkpoint_dir), ("out", out)):
        if d is not None:
            check_dir(name, d)
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir (the directory holding checkpoint.pt)")
    if ssl.config.learning.init == "hmm":
        raise ValueError("init='hmm' fits an HMM on all documents in one process; use 'smc' or 'uniform' here")
    eval_every = check_int("eval_every", eval_every, 1)
    eval_particles = check_int("eval_particles", eval_particles, 1)
    patience = ssl.config.learning.patience
    if patience and eval_data is None:
        raise ValueError(f"patience={patience} needs a validation set: pass eval_data "
                         "(a (tokens, lengths, T1) completion set or held-out documents)")
    ctx = init_distributed(rank, world_size, backend=backend, init_method=init_method, device=device)
    if shared is not None and ctx.active:
        if shared.workers != ctx.world_size or shared.rank != ctx.rank:
            raise ValueError(f"shared sums are for rank {shared.rank} of {shared.workers}, this is rank {ctx.rank} "
                             f"of {ctx.world_size}")
        ctx.shared = shared
    try:
        ssl.device = ctx.device
        corpus = _open_data(data, vocab_size)
        if len(corpus) == 0:
            raise ValueError("data has no documents; give at least one non-empty document")
        if bool((corpus.lengths < 1).any()):
            bad = int((corpus.lengths < 1).nonzero()[0])
            raise ValueError(f"data: document {bad} is empty; drop empty documents before fitting")
        V = max(int(corpus.V), vocab_size or 0)
        if eval_data is not None:
            eval_data = _check_eval_data(eval_data, V)
        ssl._build(V)
        ssl.vocab = corpus.vocab
        for t in ssl.model.state_dict().values():  # identical by seeding; make sure
            ctx.broadcast(t)
        shard = _shard(corpus, ctx.rank, ctx.world_size, V, ctx.device)
        em = StochasticEM(ssl.model, shard, ssl.config, global_lengths=corpus.lengths, reducer=ctx)
        ssl._em = em
        stopper = EarlyStopping(patience, ssl.config.learning.min_delta) if patience else None
        ssl._train(em, epochs, on_epoch=_epoch_logger(ctx, log, progress, ssl, eval_data, eval_every, eval_particles),
                   progress=False, checkpoint_dir=checkpoint_dir, resume=resume, stopper=stopper)
        paths = em.gather_paths() if return_paths else None
        if out is not None and ctx.is_main:
            ssl.save(out)
        ctx.barrier()
        return DistributedFit(ssl, em, ssl.history, ctx.rank, ctx.world_size, paths,
                              em.global_offsets() if return_paths else None)
    finally:
        if ctx.owns_group and dist.is_initialized():
            dist.destroy_process_group()


_RUN_KEYS = {"dtype", "checkpoint_dir", "resume", "progress", "log", "return_paths", "device", "backend", "shared",
             "eval_data", "eval_every", "eval_particles"}
"""Arguments of :func:`fit_distributed` that are not settings of :class:`~pyro_ssl.SSL`."""


def _local_worker(rank: int, workers: int, init_method: str, data_dir: str, out: str, kwargs: dict,
                  shared: SharedSums | None) -> None:
    fit_distributed(data_dir, rank=rank, world_size=workers, init_method=init_method, backend="gloo",
                    device="cpu", out=out, shared=None if shared is None else shared.for_rank(rank), **kwargs)
    leave_worker()  # the model is saved and the group destroyed: nothing is left to tear down


def leave_worker() -> None:
    """End a worker process at once (``os._exit(0)``), without the interpreter's teardown.

    For a process whose results are written and whose process group is destroyed. A gloo worker
    of the test suite sometimes aborted after writing its results (SIGABRT, "terminate called
    without an active exception"; 2 of 4 suite runs on 2026-12-04/05), while destroying its group
    or in the interpreter's teardown (which was not established), and its launcher then reported
    the whole run as failed. Leaving at once removes the second of these.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def fit_workers(data, workers: int, K: int | None = None, epochs: int | None = None, *,
                vocab_size: int | None = None, **kwargs) -> SSL:
    """Fit on ``workers`` processes of this machine (``torch.distributed``, gloo); returns the model.

    The same engine as a multi-machine fit (:func:`fit_distributed`), started here with
    ``torch.multiprocessing``: ``data`` is written once to a temporary on-disk corpus (unless it
    is one), every process sweeps its shard, and rank 0's saved model is loaded back. With
    every random choice keyed by document the result is the model ``workers=1`` gives (paths,
    counts and ``phi`` equal; LSTM weights up to the order of floating-point gradient sums).
    The process group is gloo's; the frequent small sums (after every block of the exact E-step
    and every gradient step) go through shared memory (:class:`SharedSums`).
    Each process runs its hot loops on one thread (:mod:`pyro_ssl.runtime`), so ``workers``
    is the number of cores used.

    Args:
        data: anything :func:`fit_distributed` takes.
        workers: processes, >= 1 (1 runs them in this process's children all the same).
        K, epochs, vocab_size, **kwargs: as for :func:`fit_distributed` (``checkpoint_dir``,
            ``resume``, ``progress``, ``dtype``, ``eval_data``, ``eval_every``, ``eval_particles``
            and the settings of :class:`~pyro_ssl.SSL`).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if K is not None:
        kwargs["K"] = K
    if epochs is not None:
        kwargs["epochs"] = epochs
    SSL(**{k: v for k, v in kwargs.items() if k not in _RUN_KEYS})  # every setting checked before any process starts
    with tempfile.TemporaryDirectory(prefix="pyro_ssl_workers_") as tmp:
        corpus = _open_data(data, vocab_size)
        if not isinstance(corpus, OnDiskCorpus):
            V = max(int(corpus.V), vocab_size or 0)
            corpus = write_ondisk(corpus, os.path.join(tmp, "corpus"), V=V)
        out = os.path.join(tmp, "model")
        # A file rendezvous: no port to pick, nothing on the network.
        init_method = "file://" + os.path.join(tmp, "rendezvous")
        try:
            shared = SharedSums(workers)
        except (RuntimeError, OSError) as e:  # no room in /dev/shm, say: the same sums over gloo
            warnings.warn(f"shared memory for the workers' sums is not available ({e}); every sum goes through "
                          "gloo, which is slower", RuntimeWarning, stacklevel=2)
            shared = None
        procs = mp.spawn(_local_worker, args=(workers, init_method, str(corpus.path), out, kwargs, shared),
                         nprocs=workers, join=False)
        if shared is not None:
            shared.close_parent_ends()
        while not procs.join():
            pass
        return SSL.load(out)



# ---------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pyro_ssl.distributed",
        description="Data-parallel Topical SSL fit (launch with torchrun for several processes).",
    )
    p.add_argument("--data", required=True, help="on-disk corpus directory, or any corpus load_corpus reads")
    p.add_argument("--prepare", metavar="DIR", help="only encode --data into an on-disk corpus at DIR and exit")
    p.add_argument("--vocab-size", type=int, default=None,
                   help="vocabulary size when building one from raw text (default 5000); else at least the corpus's V")
    add_setting_flags(p)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--device", default=None, help="default: cuda:LOCAL_RANK when available, else cpu")
    p.add_argument("--backend", default=None, help="default: nccl on CUDA, gloo on CPU")
    p.add_argument("--out", help="save the fitted model here (rank 0)")
    p.add_argument("--checkpoint-dir")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--log", help="JSON lines, one per epoch (rank 0)")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv=None) -> int:
    """The command line; returns 0, or 2 with a one-line message on a usage or data error."""
    args = build_parser().parse_args(argv)
    try:
        return _main(args)
    except (OSError, ValueError, TypeError) as e:
        print(f"python -m pyro_ssl.distributed: error: {e}", file=sys.stderr)
        return 2


def _main(args) -> int:
    if args.prepare:
        od = write_ondisk(load_corpus(args.data, vocab_size=args.vocab_size), args.prepare)
        print(f"wrote {od}")
        return 0
    fit = fit_distributed(
        args.data, vocab_size=args.vocab_size, dtype=getattr(torch, args.dtype), device=args.device,
        backend=args.backend, out=args.out, checkpoint_dir=args.checkpoint_dir, resume=args.resume,
        log=args.log, progress=not args.quiet, **chosen_settings(args),
    )
    if fit.rank == 0 and not args.quiet:
        for k, words in enumerate(fit.ssl.top_words(8)[: min(10, fit.ssl.K)]):
            print(f"topic {k:3d}: {' '.join(words)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
