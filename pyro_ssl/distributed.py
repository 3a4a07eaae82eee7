"""Data-parallel particle-Gibbs stochastic EM on ``torch.distributed`` (issue 9).

Every rank holds a contiguous shard of the documents (:meth:`OnDiskCorpus.shard
<pyro_ssl.data.ondisk.OnDiskCorpus.shard>`), and the fit is the single-process
:class:`~pyro_ssl.infer.em.StochasticEM` loop with the work of each minibatch split:

1. every rank computes the same *global* minibatch order (a permutation seeded by
   ``(seed, epoch)``) and sweeps only its own documents of each global minibatch, with
   randomness keyed by document (:class:`~pyro_ssl.smc.keyed.KeyedNoise`), so a document's
   new topic path does not depend on how documents are split across ranks;
2. the ``K x V`` count change of the minibatch is all-reduced, so the counts and ``phi`` are
   identical on every rank (sums of integers in float64: exact);
3. each M-step iteration computes the gradient of the rank's share of
   ``-sum_b log p(z_b | theta) / (tokens in the global minibatch)`` through Pyro's
   ``Trace_ELBO.loss_and_grads``; the gradients are summed across ranks with one
   ``all_reduce`` (the token-weighted average of the ranks' per-token gradients), then
   Pyro's ``Adam`` (with its gradient clipping) steps every rank's identical copy.
   Dropout masks are keyed by document too, so they do not depend on the split either.

A run with ``world_size = W`` therefore gives the same topic paths, counts and ``phi`` as a
run with ``world_size = 1`` and the same seed, and LSTM weights equal up to the order of
floating-point gradient sums (``tests/test_distributed.py``). It is *not* the same random
stream as :class:`~pyro_ssl.infer.em.StochasticEM` (which draws from one generator in batch
order), so a distributed fit and ``SSL.fit`` with the same seed differ.

Rank 0 alone writes checkpoints and logs; a checkpoint stores the global topic paths (by
global document id), counts, weights and Adam state, so every rank (of any world size)
resumes from the same file. Randomness is a function of ``(seed, epoch, ...)``, so a resumed
run continues exactly as the uninterrupted one.

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
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyro
import torch
import torch.distributed as dist
from pyro import poutine
from pyro.infer import Trace_ELBO

from .infer.em import EMConfig
from .infer.mstep import PriorMStep, leave_out_log_emission, smoothed_log_phi, topic_word_counts
from .model import TopicalSSL, length_mask, log_joint
from .smc.csmc import csmc_sweep
from .smc.keyed import KeyedNoise, keyed_generator, keyed_uniform

__all__ = ["DistContext", "DistributedEM", "DistributedFit", "fit_distributed", "init_distributed", "main"]

CHECKPOINT_FILE = "checkpoint_distributed.pt"
_CKPT_FORMAT = "pyro_ssl.distributed.checkpoint"


# ---------------------------------------------------------------------------- process group
@dataclass
class DistContext:
    """Where this process stands: rank, world size, device, and whether it owns the group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        """Sum ``t`` over ranks in place (no-op for one process)."""
        if self.active:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def broadcast(self, t: torch.Tensor, src: int = 0) -> torch.Tensor:
        if self.active:
            dist.broadcast(t, src)
        return t

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
        if device.index is None:
            device = torch.device(f"cuda:{local_rank % torch.cuda.device_count()}")
        torch.cuda.set_device(device)
    if backend is None:
        backend = "nccl" if device.type == "cuda" else "gloo"
    if owns:
        kwargs = {}
        if backend == "nccl":
            kwargs["device_id"] = device
        dist.init_process_group(backend, init_method=init_method or "env://", rank=rank, world_size=world_size, **kwargs)
    elif world_size > 1:
        backend = dist.get_backend()
    return DistContext(rank, world_size, local_rank, device, backend if world_size > 1 else None, owns)


# ---------------------------------------------------------------------------- data shards
class _CorpusShard:
    """A contiguous block ``[start, stop)`` of an in-memory corpus, with :class:`OnDiskCorpus`'s shard API."""

    def __init__(self, corpus, start: int, stop: int):
        self.corpus, self.start, self.stop = corpus, int(start), int(stop)
        self._part = corpus[self.start : self.stop]

    def __len__(self) -> int:
        return self.stop - self.start

    @property
    def lengths(self) -> torch.Tensor:
        return self._part.lengths

    def padded(self, indices=None, device=None):
        part = self._part if indices is None else self._part[torch.as_tensor(indices, dtype=torch.long)]
        return part.padded(device=device)

    def word_counts(self) -> torch.Tensor:
        return self._part.word_counts()


def _open_data(data, vocab_size: int | None = None):
    """``data`` -> (a sharding corpus object, V, vocab). Paths: an on-disk corpus or anything
    :func:`~pyro_ssl.data.load_corpus` reads (every rank then reads the whole file)."""
    from .data import Corpus, load_corpus
    from .data.ondisk import OnDiskCorpus, is_ondisk_corpus

    if isinstance(data, (str, os.PathLike)):
        data = OnDiskCorpus.open(data) if is_ondisk_corpus(data) else load_corpus(data, vocab_size=vocab_size or 5000)
    if isinstance(data, (OnDiskCorpus, Corpus)):
        return data, max(int(data.V), vocab_size or 0), data.vocab
    if isinstance(data, tuple) and len(data) == 2 and torch.is_tensor(data[0]):
        tokens, lengths = data
        docs = [tokens[i, : int(n)] for i, n in enumerate(lengths)]
        c = Corpus(docs, vocab_size=vocab_size)
        return c, c.V, None
    c = Corpus(data, vocab_size=vocab_size)
    return c, c.V, None


def _shard_bounds(D: int, rank: int, world_size: int) -> tuple[int, int]:
    return D * rank // world_size, D * (rank + 1) // world_size


def _shard(data, rank: int, world_size: int):
    from .data.ondisk import OnDiskCorpus

    if isinstance(data, OnDiskCorpus):
        return data.shard(rank, world_size)
    lo, hi = _shard_bounds(len(data), rank, world_size)
    return _CorpusShard(data, lo, hi)


# ---------------------------------------------------------------------------- M-step
def keyed_sequence_log_prob(prior, z: torch.Tensor, mask: torch.Tensor, drop_in=None, drop_out=None) -> torch.Tensor:
    """:meth:`LSTMPrior.sequence_log_prob <pyro_ssl.model.LSTMPrior.sequence_log_prob>` with
    given dropout masks (``(B, T, E)`` on the embedding, ``(B, T, H)`` on the LSTM output,
    already scaled by ``1 / (1 - p)``) instead of ``nn.Dropout``'s global-RNG ones."""
    K = prior.K
    start = torch.full_like(z[:, :1], prior.start_symbol)
    inputs = torch.cat([start, z[:, :-1]], dim=1).clamp(0, K)
    e = prior.embed(inputs)
    if drop_in is not None:
        e = e * drop_in
    s, _ = prior.lstm(e)
    if drop_out is not None:
        s = s * drop_out
    logp = torch.log_softmax(prior.out(s), dim=-1)
    logp = logp.gather(-1, z.clamp(0, K - 1).unsqueeze(-1)).squeeze(-1).masked_fill(~mask, 0.0)
    return logp.sum(-1)


_M32 = 0xFFFFFFFF


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mixer on int64 tensors holding values in ``[0, 2^32)``.

    Multipliers are below ``2^31``, so no product leaves int64's range (no reliance on
    overflow behaviour); runs on any device.
    """
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x2C1B3C6D) & _M32
    x = x ^ (x >> 13)
    x = (x * 0x297A2D39) & _M32
    return x ^ (x >> 16)


def keyed_dropout_masks(seed: int, key: tuple, doc_ids, lengths, T: int, sizes: tuple[int, ...], p: float, device, dtype):
    """Inverted-dropout masks per document, keyed by ``(seed, "dropout", *key, doc)``.

    The mask of a document does not depend on its batch, its position in it, or the batch's
    padded length. On the CPU each document's uniforms come from its own generator (rows of
    ``sum(sizes)``, one per step); on a GPU, where that loop would dominate the M-step,
    entry ``(t, j)`` is kept when a counter-based hash of ``(key(d), t * sum(sizes) + j)``
    (24-bit uniforms) exceeds ``p``, computed on the device in one pass. (So the masks, like
    every other number, differ between CPU and GPU runs.) Returns one ``(B, T, size)`` mask
    per entry of ``sizes``, scaled by ``1 / (1 - p)``.
    """
    from .smc.keyed import mix_key

    total = sum(sizes)
    if torch.device(device).type == "cpu":
        B = len(doc_ids)
        u = torch.ones(B, T, total, dtype=torch.float64)  # >= p: kept (padding)
        for b, (d, n) in enumerate(zip(doc_ids.tolist(), lengths.tolist())):
            n = min(int(n), T)
            u[b, :n] = keyed_uniform((n, total), seed, "dropout", *key, d).view(n, total)
        keep = (u >= p).to(dtype) / (1.0 - p)
        return list(keep.split(list(sizes), dim=-1))
    return _hashed_dropout_masks(seed, key, doc_ids, T, sizes, p, device, dtype)


def _hashed_dropout_masks(seed, key, doc_ids, T, sizes, p, device, dtype):
    """The GPU branch of :func:`keyed_dropout_masks` (any device)."""
    from .smc.keyed import mix_key

    total = sum(sizes)
    keys = torch.tensor([mix_key(seed, "dropout", *key, int(d)) for d in doc_ids.tolist()], dtype=torch.long)
    k_lo = (keys & _M32).to(device).view(-1, 1, 1)
    k_hi = ((keys >> 32) & _M32).to(device).view(-1, 1, 1)
    counter = torch.arange(T * total, device=device, dtype=torch.long).view(1, T, total)
    h = _hash32(_hash32((counter ^ k_hi) & _M32) ^ k_lo)
    u = (h >> 8).to(torch.float64) / float(1 << 24)
    keep = (u >= p).to(dtype) / (1.0 - p)
    return list(keep.split(list(sizes), dim=-1))


# ---------------------------------------------------------------------------- the loop
class DistributedEM:
    """Particle-Gibbs stochastic EM over a rank's shard; collectives keep ranks in step.

    Args:
        model: the :class:`~pyro_ssl.model.TopicalSSL` (identical on every rank).
        shard: this rank's documents: an :class:`~pyro_ssl.data.ondisk.OnDiskCorpus` shard (or
            any object with ``start``, ``stop``, ``lengths``, ``padded(indices)``,
            ``word_counts()``).
        global_lengths: ``(D,)`` lengths of *all* documents (every rank knows them: they
            fix the global minibatches' token counts).
        config: :class:`~pyro_ssl.infer.em.EMConfig` (``phi_update="smoothed"``, ``init`` in
            ``uniform``/``smc``).
        seed: keys all randomness.
        ctx: :class:`DistContext`.
    """

    def __init__(self, model: TopicalSSL, shard, global_lengths: torch.Tensor, config: EMConfig, seed: int, ctx: DistContext):
        config.validate()
        if config.phi_update != "smoothed":
            raise ValueError("the distributed fit supports phi_update='smoothed' only")
        if config.init not in ("uniform", "smc"):
            raise ValueError("the distributed fit supports init='uniform' or 'smc'")
        self.model, self.config, self.seed, self.ctx = model, config, int(seed), ctx
        self.shard = shard
        self.lo, self.hi = int(shard.start), int(shard.stop)
        self.global_lengths = global_lengths.to(torch.long).cpu()
        self.D = int(self.global_lengths.numel())
        self.device = model.prior.device
        self.local_lengths = shard.lengths.to(torch.long).cpu()
        off = torch.zeros(self.local_lengths.numel() + 1, dtype=torch.long)
        torch.cumsum(self.local_lengths, 0, out=off[1:])
        self.local_offsets = off.to(self.device)
        # This rank's topic paths, flat in the shard's token order (CSR, like the tokens).
        self.paths = torch.zeros(int(off[-1]), dtype=torch.int32, device=self.device)
        self.counts: torch.Tensor | None = None
        self.log_phi: torch.Tensor | None = None
        self.epoch = 0
        self.prior_step = PriorMStep(model.prior, lr=config.lr, clip_norm=config.clip_norm)
        self._elbo = Trace_ELBO()
        self.comm_seconds = 0.0

    # ------------------------------------------------------------------ local storage
    def _positions(self, local: torch.Tensor, T: int):
        n = self.local_lengths[local].to(self.device)
        mask = length_mask(n, T)
        pos = self.local_offsets[local.to(self.device)].unsqueeze(-1) + torch.arange(T, device=self.device)
        return pos[mask], mask

    def _get_paths(self, local: torch.Tensor, T: int) -> torch.Tensor:
        pos, mask = self._positions(local, T)
        z = torch.zeros(mask.shape, dtype=torch.long, device=self.device)
        z[mask] = self.paths[pos].long()
        return z

    def _set_paths(self, local: torch.Tensor, z: torch.Tensor) -> None:
        pos, mask = self._positions(local, z.shape[1])
        self.paths[pos] = z[mask].to(torch.int32)

    def _batch(self, local: torch.Tensor):
        x, n = self.shard.padded(local)
        return x.to(self.device), n.to(self.device)

    def _reduce(self, t: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        self.ctx.all_reduce(t)
        self.comm_seconds += time.perf_counter() - t0
        return t

    def _refresh_phi(self) -> None:
        self.log_phi = smoothed_log_phi(self.counts, self.model.beta).to(self.model.prior.dtype)

    def _order(self, epoch: int) -> torch.Tensor:
        return torch.randperm(self.D, generator=keyed_generator(self.seed, "order", epoch))

    def _minibatches(self, epoch: int):
        """``(global ids, local indices)`` of this rank's part of every global minibatch."""
        for gidx in self._order(epoch).split(self.config.batch_size):
            mine = gidx[(gidx >= self.lo) & (gidx < self.hi)]
            yield gidx, mine, mine - self.lo

    # ------------------------------------------------------------------ initial paths
    @torch.no_grad()
    def initialize(self) -> None:
        """Initial paths of this shard (keyed by document), global counts, ``phi``."""
        cfg, model = self.config, self.model
        K, V = model.K, model.V
        n_local = len(self.local_lengths)
        ids_all = torch.arange(self.lo, self.hi)
        if cfg.init == "smc":
            wc = self.shard.word_counts()
            unigram = torch.zeros(V, dtype=torch.float64, device=self.device)
            unigram[: wc.numel()] = wc.to(device=self.device, dtype=torch.float64)
            self._reduce(unigram)
            # The same Gamma(1) perturbation on every rank (keyed by the seed alone).
            noise = -torch.log(keyed_uniform((K, V), self.seed, "phi", 0)).to(self.device)
            w = (unigram + model.beta) * noise
            init_log_phi = (w.log() - w.sum(-1, keepdim=True).log()).to(model.prior.dtype)
        for local in torch.arange(n_local).split(cfg.batch_size):
            x, n = self._batch(local)
            ids = ids_all[local]
            if cfg.init == "uniform":
                z = torch.zeros(x.shape, dtype=torch.long)
                for b, (d, L) in enumerate(zip(ids.tolist(), n.tolist())):
                    z[b, :L] = (keyed_uniform((L,), self.seed, "init", 0, d) * K).long().clamp_(max=K - 1)
                z = z.to(self.device)
            else:
                noise_b = KeyedNoise(self.seed, ids, n, x.shape[1], cfg.num_particles, (0,), stream="init",
                                     device=self.device, dtype=model.prior.dtype)
                z = csmc_sweep(model.prior, init_log_phi, x, n, cfg.num_particles, None,
                               resampling="systematic", noise=noise_b).path
            self._set_paths(local, z)
        self.counts = self._local_counts()
        self._reduce(self.counts)
        self._refresh_phi()
        for it in range(cfg.init_steps):
            for mb, (gidx, mine, local) in enumerate(self._minibatches(-1 - it)):
                self._mstep_minibatch(gidx, mine, local, key=(-1 - it, mb))

    def _local_counts(self) -> torch.Tensor:
        K, V = self.model.K, self.model.V
        counts = torch.zeros(K, V, dtype=torch.float64, device=self.device)
        for local in torch.arange(len(self.local_lengths)).split(max(self.config.batch_size, 256)):
            x, n = self._batch(local)
            counts += topic_word_counts(self._get_paths(local, x.shape[1]), x, n, K, V)
        return counts

    # ------------------------------------------------------------------ M-step
    def _model(self, z, mask, scale, drop_in, drop_out):
        pyro.module("ssl_prior", self.model.prior)
        if z.shape[0] == 0:
            return
        lp = keyed_sequence_log_prob(self.model.prior, z, mask, drop_in, drop_out)
        pyro.factor("z", scale * lp.sum())

    def _guide(self, *args):
        pass

    def mstep(self, z: torch.Tensor, n: torch.Tensor, ids: torch.Tensor, global_tokens: int, key: tuple) -> float:
        """One gradient step on the global minibatch; returns this rank's share of the loss.

        The rank's loss is ``-sum_{b local} log p(z_b) / global_tokens``: summed over ranks it
        is the single-process loss, so the all-reduced (summed) gradient is the global one.
        """
        prior = self.model.prior
        p = float(prior.drop.p)
        T = z.shape[1]
        mask = length_mask(n, T)
        drop_in = drop_out = None
        if p > 0 and z.shape[0]:
            drop_in, drop_out = keyed_dropout_masks(
                self.seed, key, ids, n, T, (prior.embed_dim, prior.hidden_size), p, self.device, prior.dtype
            )
        scale = 1.0 / max(int(global_tokens), 1)
        with pyro.get_param_store().scope():
            # Training mode only for cuDNN's RNN backward: dropout here is the keyed masks, and
            # the one-layer LSTM has none of its own, so the numbers are those of eval mode.
            prior.train()
            try:
                with poutine.trace(param_only=True) as capture:
                    loss = self._elbo.loss_and_grads(self._model, self._guide, z, mask, scale, drop_in, drop_out)
            finally:
                prior.eval()
            sites = sorted(capture.trace.nodes.items())  # same order on every rank
            params = [site["value"].unconstrained() for _, site in sites]
            grads = [q.grad if q.grad is not None else torch.zeros_like(q) for q in params]
            if self.ctx.active:
                flat = torch.cat([g.reshape(-1) for g in grads])
                self._reduce(flat)
                for q, g in zip(params, flat.split([q.numel() for q in params])):
                    q.grad = g.view_as(q).clone()
            else:
                for q, g in zip(params, grads):
                    q.grad = g
            self.prior_step.optim(params)
            pyro.infer.util.zero_grads(set(params))
        return float(loss)

    def _mstep_minibatch(self, gidx, mine, local, key) -> float:
        global_tokens = int(self.global_lengths[gidx].sum())
        if len(local):
            x, n = self._batch(local)
            z = self._get_paths(local, x.shape[1])
        else:
            n = torch.zeros(0, dtype=torch.long, device=self.device)
            z = torch.zeros(0, 1, dtype=torch.long, device=self.device)
        total = 0.0
        for it in range(self.config.mstep_iters):
            total += self.mstep(z, n, mine, global_tokens, key + (it,))
        return total

    # ------------------------------------------------------------------ one epoch
    def run_epoch(self) -> dict:
        """E-step, ``phi`` update and M-step over every global minibatch (this rank's part)."""
        if self.counts is None:
            self.initialize()
        cfg, model = self.config, self.model
        K, V = model.K, model.V
        t0 = time.perf_counter()
        comm0 = self.comm_seconds
        e_seconds = m_seconds = 0.0
        # [log joint, changed positions, M-step loss (rank shares), documents swept]
        acc = torch.zeros(4, dtype=torch.float64, device=self.device)
        for mb, (gidx, mine, local) in enumerate(self._minibatches(self.epoch)):
            te = time.perf_counter()
            have = len(local) > 0
            if have:
                x, n = self._batch(local)
                T = x.shape[1]
                mask = length_mask(n, T)
            for s in range(cfg.sweeps_per_epoch):
                delta = torch.zeros(K, V, dtype=torch.float64, device=self.device)
                if have:
                    old = self._get_paths(local, T)
                    log_emission = None
                    if cfg.emission == "leave_out":
                        log_emission = leave_out_log_emission(self.counts, old, x, n, model.beta)
                    noise = KeyedNoise(self.seed, mine, n, T, cfg.num_particles, (self.epoch, s),
                                       device=self.device, dtype=model.prior.dtype)
                    new = csmc_sweep(model.prior, self.log_phi, x, n, cfg.num_particles, old,
                                     resampling=cfg.resampling, ancestor_lag=cfg.ancestor_lag,
                                     log_emission=log_emission, noise=noise).path
                    delta += topic_word_counts(new, x, n, K, V)
                    delta -= topic_word_counts(old, x, n, K, V)
                    acc[1] += ((old != new) & mask).sum()
                    self._set_paths(local, new)
                self._reduce(delta)
                self.counts += delta
                self.counts.clamp_(min=0.0)
                self._refresh_phi()
            acc[3] += len(local)
            tm = time.perf_counter()
            e_seconds += tm - te
            acc[2] += self._mstep_minibatch(gidx, mine, local, key=(self.epoch, mb))
            m_seconds += time.perf_counter() - tm
            if have:
                with torch.no_grad():
                    z = self._get_paths(local, T)
                    acc[0] += log_joint(model.prior, self.log_phi, x, z, n).sum()
        self._reduce(acc)
        self.epoch += 1
        tokens = int(self.global_lengths.sum())
        seconds = time.perf_counter() - t0
        return {
            "epoch": self.epoch,
            "log_joint_per_token": float(acc[0]) / tokens,
            "mstep_loss": float(acc[2]) / max(cfg.mstep_iters * -(-self.D // cfg.batch_size), 1),
            "update_rate": float(acc[1]) / (tokens * cfg.sweeps_per_epoch),
            "seconds": seconds,
            "estep_seconds": e_seconds,
            "mstep_seconds": m_seconds,
            "comm_seconds": self.comm_seconds - comm0,
            "docs_per_second": self.D / seconds,
            "world_size": self.ctx.world_size,
            "local_docs": int(self.hi - self.lo),
        }

    # ------------------------------------------------------------------ global views
    def gather_paths(self) -> torch.Tensor:
        """All documents' paths, flat in global token order, on every rank (a collective)."""
        W = self.ctx.world_size
        if W == 1:
            return self.paths.long().cpu()
        off = torch.zeros(self.D + 1, dtype=torch.long)
        torch.cumsum(self.global_lengths, 0, out=off[1:])
        sizes = [int(off[_shard_bounds(self.D, r, W)[1]] - off[_shard_bounds(self.D, r, W)[0]]) for r in range(W)]
        m = max(sizes)
        buf = torch.zeros(m, dtype=torch.int32, device=self.device)
        buf[: self.paths.numel()] = self.paths
        out = [torch.zeros_like(buf) for _ in range(W)]
        t0 = time.perf_counter()
        dist.all_gather(out, buf)
        self.comm_seconds += time.perf_counter() - t0
        return torch.cat([o[:s].cpu() for o, s in zip(out, sizes)]).long()

    def global_offsets(self) -> torch.Tensor:
        off = torch.zeros(self.D + 1, dtype=torch.long)
        torch.cumsum(self.global_lengths, 0, out=off[1:])
        return off

    def state_dict(self, paths: torch.Tensor | None = None) -> dict:
        """Everything to resume on any world size (``paths``: :meth:`gather_paths`)."""
        return {
            "format": _CKPT_FORMAT,
            "epoch": self.epoch,
            "seed": self.seed,
            "D": self.D,
            "num_tokens": int(self.global_lengths.sum()),
            "config": self.config.as_dict(),
            "prior": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "counts": self.counts.cpu(),
            "paths": (paths if paths is not None else self.gather_paths()).to(torch.int32),
            "mstep": self.prior_step.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("format") != _CKPT_FORMAT:
            raise ValueError("not a distributed-fit checkpoint")
        if int(state["D"]) != self.D or int(state["num_tokens"]) != int(self.global_lengths.sum()):
            raise ValueError(
                f"checkpoint was written for {state['D']} documents / {state['num_tokens']} tokens, "
                f"the data has {self.D} / {int(self.global_lengths.sum())}"
            )
        if int(state["seed"]) != self.seed:
            raise ValueError(f"checkpoint seed {state['seed']} != {self.seed}")
        self.model.load_state_dict(state["prior"])
        self.counts = state["counts"].to(self.device)
        off = self.global_offsets()
        self.paths = state["paths"][int(off[self.lo]) : int(off[self.hi])].to(device=self.device, dtype=torch.int32)
        self.epoch = int(state["epoch"])
        self._refresh_phi()
        self.prior_step.load_state_dict(state["mstep"])


# ---------------------------------------------------------------------------- user entry
@dataclass
class DistributedFit:
    """Result of :func:`fit_distributed` on one rank.

    Attributes:
        ssl: the fitted :class:`~pyro_ssl.SSL` (identical on every rank).
        em: the rank's :class:`DistributedEM` (counts, this shard's paths).
        history: per-epoch entries (identical on every rank; rank 0 logs them).
        paths: all documents' paths, flat in global token order (with ``return_paths``).
        offsets: ``(D + 1,)`` global offsets into ``paths``.
    """

    ssl: object
    em: DistributedEM
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


def _save_checkpoint(state: dict, history: list, directory: Path) -> Path:
    from .io import atomic_write

    state = dict(state, history=history)
    return atomic_write(Path(directory) / CHECKPOINT_FILE, lambda tmp: torch.save(state, tmp))


def fit_distributed(
    data,
    K: int = 50,
    epochs: int = 30,
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
    seed: int = 0,
    **ssl_kwargs,
) -> DistributedFit:
    """Fit a Topical SSL data-parallel over ``world_size`` processes (or 1).

    Call it in every process (torchrun, or ``torch.multiprocessing.spawn`` with ``rank``,
    ``world_size`` and ``init_method``); each process reads only its shard of ``data``.

    Args:
        data: an on-disk corpus directory (:mod:`pyro_ssl.data.ondisk`) or object, a
            :class:`~pyro_ssl.data.Corpus`, token-id sequences, or any path
            :func:`~pyro_ssl.data.load_corpus` reads.
        K, epochs, seed, **ssl_kwargs: as for :class:`~pyro_ssl.SSL` (``phi_update`` must be
            ``"smoothed"``, ``init`` ``"uniform"`` or ``"smc"``).
        rank, world_size, backend, init_method, device: see :func:`init_distributed`.
        checkpoint_dir: rank 0 writes ``checkpoint_distributed.pt`` there after every epoch.
        resume: every rank continues from that checkpoint (``epochs`` counts from the start of
            the original run, as for :meth:`SSL.fit`).
        out: rank 0 saves the fitted model there (:meth:`SSL.save`).
        log: rank 0 appends one JSON line per epoch to this file.
        progress: rank 0 prints one line per epoch.
        return_paths: gather every document's path onto every rank at the end.
    """
    from .estimator import SSL

    ctx = init_distributed(rank, world_size, backend=backend, init_method=init_method, device=device)
    try:
        corpus, V, vocab = _open_data(data, vocab_size)
        ssl = SSL(K=K, seed=seed, device=ctx.device, dtype=dtype, **ssl_kwargs)
        ssl._build(V)
        ssl.vocab = vocab
        model = ssl.model
        # Identical initial weights on every rank (they are by seeding; make sure).
        for t in model.state_dict().values():
            ctx.broadcast(t)
        shard = _shard(corpus, ctx.rank, ctx.world_size)
        em = DistributedEM(model, shard, corpus.lengths, ssl.config, seed, ctx)
        history: list = []
        ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        if resume:
            if ckpt_dir is None:
                raise ValueError("resume=True needs checkpoint_dir")
            f = ckpt_dir / CHECKPOINT_FILE
            if f.is_file():
                state = torch.load(f, map_location="cpu", weights_only=False)
                em.load_state_dict(state)
                history = list(state.get("history", []))
            elif ctx.is_main:
                print(f"no checkpoint in {ckpt_dir}; starting a fresh fit", file=sys.stderr)
        while em.epoch < int(epochs):
            entry = em.run_epoch()
            history.append(entry)
            if ckpt_dir is not None:
                state = em.state_dict()  # collective (gathers the paths)
                if ctx.is_main:
                    _save_checkpoint(state, history, ckpt_dir)
            if ctx.is_main:
                if log is not None:
                    Path(log).parent.mkdir(parents=True, exist_ok=True)
                    with open(log, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(entry) + "\n")
                if progress:
                    print(
                        f"epoch {entry['epoch']:3d}  logp/tok {entry['log_joint_per_token']:.4f}  "
                        f"{entry['seconds']:.2f}s ({entry['docs_per_second']:.1f} docs/s, "
                        f"comm {entry['comm_seconds']:.2f}s)  world {ctx.world_size}",
                        flush=True,
                    )
        if em.counts is None:
            em.initialize()
        ssl.log_phi = em.log_phi
        ssl.history = history
        paths = em.gather_paths() if return_paths else None
        if out is not None and ctx.is_main:
            ssl.save(out)
        ctx.barrier()
        return DistributedFit(ssl, em, history, ctx.rank, ctx.world_size, paths, em.global_offsets() if return_paths else None)
    finally:
        if ctx.owns_group and dist.is_initialized():
            dist.destroy_process_group()


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
    p.add_argument("-K", type=int, default=50)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--particles", dest="num_particles", type=int, default=10)
    p.add_argument("--ancestor-lag", default="5")
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--mstep-iters", type=int, default=5)
    p.add_argument("--init", default="smc", choices=["uniform", "smc"])
    p.add_argument("--emission", default="leave_out", choices=["global", "leave_out"])
    p.add_argument("--seed", type=int, default=0)
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
    args = build_parser().parse_args(argv)
    if args.prepare:
        from .data import load_corpus
        from .data.ondisk import write_ondisk

        od = write_ondisk(load_corpus(args.data, vocab_size=args.vocab_size), args.prepare)
        print(f"wrote {od}")
        return 0
    lag = args.ancestor_lag if args.ancestor_lag == "full" else int(args.ancestor_lag)
    fit = fit_distributed(
        args.data,
        K=args.K,
        epochs=args.epochs,
        vocab_size=args.vocab_size,
        num_particles=args.num_particles,
        ancestor_lag=lag,
        hidden_size=args.hidden_size,
        dropout=args.dropout,
        beta=args.beta,
        batch_size=args.batch_size,
        lr=args.lr,
        mstep_iters=args.mstep_iters,
        init=args.init,
        emission=args.emission,
        seed=args.seed,
        dtype=getattr(torch, args.dtype),
        device=args.device,
        backend=args.backend,
        out=args.out,
        checkpoint_dir=args.checkpoint_dir,
        resume=args.resume,
        log=args.log,
        progress=not args.quiet,
    )
    if fit.rank == 0 and not args.quiet:
        for k, words in enumerate(fit.ssl.top_words(8)[: min(10, fit.ssl.K)]):
            print(f"topic {k:3d}: {' '.join(words)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
