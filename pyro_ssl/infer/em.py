"""Particle Gibbs within stochastic EM (SPEC section 3): the one learning loop.

Per minibatch: one batched CSMC sweep gives new topic paths ``z*`` (E-step); the topic-word
counts of all training documents are updated and ``phi`` recomputed from them; then Pyro's
optimiser takes gradient steps on ``-log p(z* | theta)`` (M-step). The next minibatch is swept
with the parameters just updated.

The same loop runs in one process and data-parallel. A process holds a *shard* of the
documents (all of them in one process) and a :class:`~pyro_ssl.infer.reduce.Reducer`. Every
process computes the same global minibatch order, sweeps only its own documents of each
minibatch, and sums count changes, gradients and statistics through the reducer (the
identity in one process). Every random choice is keyed by ``(seed, what, epoch, ...,
document)`` (:mod:`pyro_ssl.smc.uniforms`), so a document's draws do not depend on which
process holds it: the same seed gives the same topic paths, counts and ``phi`` in one process
and in ``N``, and LSTM weights equal up to the order of floating-point gradient sums.
"""

from __future__ import annotations

import hashlib
import math
import time
import zlib
from dataclasses import dataclass

import torch

from ..config import SSLConfig
from ..data.shard import shard_bounds
from ..model import TopicalSSL, length_mask, log_joint
from ..runtime import hot_loop
from ..smc.blocked import block_starts, blocked_csmc_sweep
from ..smc.csmc import csmc_sweep
from ..smc.uniforms import KeyedUniforms, keyed_generator, keyed_rows, keyed_uniform, mix_key
from .collapsed import collapsed_mh, visit_order_log_emission
from .mstep import (
    PriorMStep,
    dirichlet_log_phi,
    dropout_masks,
    leave_out_log_emission,
    smoothed_log_phi,
    topic_word_counts,
)
from .reduce import LOCAL, Reducer

__all__ = ["EStep", "StochasticEM", "SweepStats", "by_quintile", "estep_for_epoch", "perturbed_log_phi"]


@dataclass(frozen=True)
class EStep:
    """The E-step of one epoch: its kernel (``"ancestor"`` or ``"blocked"``), look-ahead and
    emissions, and whether it is the warm-up's heuristic one."""

    kernel: str
    ancestor_lag: int | str
    emission: str
    warmup: bool


def estep_for_epoch(config: SSLConfig, epoch: int) -> EStep:
    """The E-step of ``epoch`` (0-based): the warm-up's fast heuristic (ancestor sampling with
    look-ahead ``ancestor_lag``, leave-out emissions) for ``epoch < warmup_epochs``, the
    configured kernel and emissions after. The warm-up only chooses where the exact chain
    starts (paths, counts and prior); it is not part of the target."""
    s, lr = config.sampler, config.learning
    if epoch < lr.warmup_epochs:
        return EStep("ancestor", s.ancestor_lag, "leave_out", True)
    return EStep(s.kernel, s.ancestor_lag, lr.emission, False)


@dataclass
class SweepStats:
    """Mixing diagnostics accumulated over one epoch's sweeps, by position ``(T,)``.

    ``update_rate[t]``: share of documents whose topic at position ``t`` changed in a sweep;
    ``ess[t]``: mean ESS of the weights after step ``t``; ``ancestors[t]``: mean number of
    distinct step-``t`` ancestors among the final particles.
    """

    sums: torch.Tensor  # (4, T): changed, ess, ancestors, active

    @classmethod
    def zeros(cls, T: int, device) -> "SweepStats":
        return cls(torch.zeros(4, T, dtype=torch.float64, device=device))

    def add(self, old: torch.Tensor, new: torch.Tensor, ess: torch.Tensor, anc: torch.Tensor, mask: torch.Tensor):
        T = mask.shape[1]
        m = mask.to(torch.float64)
        for row, v in enumerate(((old != new), ess, anc, mask)):
            self.sums[row, :T] += (v.to(torch.float64) * m).sum(0)

    def summary(self) -> dict:
        changed, ess, anc, active = self.sums
        keep = active > 0
        a = active[keep]
        rate = changed[keep] / a
        return {
            "update_rate": rate.tolist(),
            "update_rate_quintiles": by_quintile(rate),
            "ess": (ess[keep] / a).tolist(),
            "ancestors": (anc[keep] / a).tolist(),
        }


def by_quintile(v: torch.Tensor) -> list[float]:
    """Means of ``v`` ``(T,)`` over its five position quintiles (fewer parts when ``T < 5``)."""
    if v.numel() == 0:
        return []
    return [float(c.mean()) for c in torch.tensor_split(v, min(5, v.numel()))]


def perturbed_log_phi(unigram: torch.Tensor, K: int, beta: float, seed: int, dtype) -> torch.Tensor:
    """Topics that are the corpus unigram times independent Gamma(1) noise, ``(K, V)``.

    Every topic is plausible for the corpus but each prefers different words, so a filter pass
    under them assigns topics that already differ (a start where every topic looks alike is a
    fixed point particle Gibbs leaves slowly; issue 8). ``unigram``: ``(V,)`` word counts.
    The noise is keyed by ``seed`` alone, the same in every process.
    """
    K_, V = int(K), unigram.numel()
    noise = -torch.log(keyed_uniform((K_, V), int(seed), "phi", 0)).to(unigram.device)
    w = (unigram.to(torch.float64) + beta) * noise
    return (w.log() - w.sum(-1, keepdim=True).log()).to(dtype)


class StochasticEM:
    """State of a particle-Gibbs stochastic-EM run over one process's documents.

    Args:
        model: the :class:`~pyro_ssl.model.TopicalSSL` whose prior is trained in place.
        shard: this process's documents (:class:`~pyro_ssl.data.shard.TokenShard`, or an
            :class:`~pyro_ssl.data.ondisk.OnDiskCorpus` shard): ``start``, ``stop``,
            ``lengths``, ``padded(indices, device)``, ``word_counts()``.
        config: :class:`~pyro_ssl.config.SSLConfig` (sampler, learning and seed are used).
        global_lengths: ``(D,)`` lengths of *all* documents (default: the shard's, one process).
        reducer: :data:`~pyro_ssl.infer.reduce.LOCAL` or one that sums over ranks.
        initial_paths: optional ``(D_shard, T)`` start paths (e.g. from an HMM) instead of
            ``config.learning.init``.
    """

    def __init__(self, model: TopicalSSL, shard, config: SSLConfig, *, global_lengths: torch.Tensor | None = None,
                 reducer: Reducer = LOCAL, initial_paths: torch.Tensor | None = None):
        self.model, self.config, self.reducer, self.shard = model, config, reducer, shard
        self.sampler, self.learning, self.seed = config.sampler, config.learning, int(config.seed)
        self.device = model.prior.device
        self.lo, self.hi = int(shard.start), int(shard.stop)
        self.local_lengths = shard.lengths.to(torch.long).cpu()
        self.global_lengths = (self.local_lengths if global_lengths is None else global_lengths).to(torch.long).cpu()
        self.D = int(self.global_lengths.numel())
        self.T_max = int(self.global_lengths.max()) if self.D else 0
        off = torch.zeros(self.local_lengths.numel() + 1, dtype=torch.long)
        torch.cumsum(self.local_lengths, 0, out=off[1:])
        self.local_offsets = off.to(self.device)
        # This shard's topic paths, flat in its token order (CSR, like an on-disk corpus).
        self.paths = torch.zeros(int(off[-1]), dtype=torch.int32, device=self.device)
        self.counts: torch.Tensor | None = None
        self.log_phi: torch.Tensor | None = None
        self.epoch = 0
        self.mstep = PriorMStep(model.prior, lr=self.learning.lr, clip_norm=self.learning.clip_norm, reducer=reducer)
        self._initial_paths = initial_paths
        self.estep = estep_for_epoch(config, 0)
        # The collapsed E-step's proposals leave out the window (block) of each document decided
        # before them in their group; on a corpus of short documents a window is most of a
        # document, so groups of at most a quarter of the corpus keep that share small
        # (on tests/test_collapsed.py's 24-document corpus: acceptance 0.84 against 0.64-0.72).
        self._collapsed_group = max(1, min(self.learning.batch_size, self.D // 4))

    # ------------------------------------------------------------------ storage
    def _positions(self, local: torch.Tensor, T: int):
        n = self.local_lengths[local].to(self.device)
        mask = length_mask(n, T)
        pos = self.local_offsets[local.to(self.device)].unsqueeze(-1) + torch.arange(T, device=self.device)
        return pos[mask], mask

    def get_paths(self, local: torch.Tensor, T: int) -> torch.Tensor:
        """``(B, T)`` long paths of shard-local documents ``local`` (0 at padding)."""
        pos, mask = self._positions(local, T)
        z = torch.zeros(mask.shape, dtype=torch.long, device=self.device)
        z[mask] = self.paths[pos].long()
        return z

    def _set_paths(self, local: torch.Tensor, z: torch.Tensor) -> None:
        pos, mask = self._positions(local, z.shape[1])
        self.paths[pos] = z[mask].to(torch.int32)

    def _batch(self, local: torch.Tensor):
        return self.shard.padded(local, device=self.device)

    def _held(self, gidx) -> torch.Tensor:
        """Places in ``gidx`` of the documents this process stores."""
        return ((gidx >= self.lo) & (gidx < self.hi)).nonzero().squeeze(1)

    def _store(self, gidx, paths: torch.Tensor) -> None:
        """Store this process's documents' rows of ``paths`` ``(len(gidx), T)``, the global ``gidx``'s."""
        held = self._held(gidx)
        if len(held):
            self._set_paths(gidx[held] - self.lo, paths[held.to(self.device)])

    def _group(self, gidx):
        """``(words, paths)`` ``(Bg, Tg)`` long of the global group ``gidx`` on every rank: documents
        in visit order, padded to the group's longest (0 after each document's end). Each rank fills
        in the documents it holds of one summed buffer."""
        Bg, Tg = len(gidx), int(self.global_lengths[gidx].max())
        buf = torch.zeros(2, Bg, Tg, dtype=torch.long, device=self.device)
        held = self._held(gidx)
        if len(held):
            local = gidx[held] - self.lo
            x, _ = self._batch(local)
            buf[0, held.to(self.device), : x.shape[1]] = x.long()
            buf[1, held.to(self.device), : x.shape[1]] = self.get_paths(local, x.shape[1])
        words, paths = self.reducer.sum(buf).unbind(0)
        return words, paths

    def _share(self, B: int) -> tuple[int, int]:
        """``[lo, hi)``: the rows of a global group or minibatch of ``B`` documents this rank works on.
        An even split whichever process stores them, so no rank waits for one with more."""
        return shard_bounds(B, self.reducer.rank, self.reducer.world_size)

    def _shared_batch(self, gidx, groups):
        """``(mine, x (B, T), z (B, T), n (B,))`` for the M-step and the log joint: this rank's share
        of the minibatch ``gidx`` (:meth:`_share`), words and paths from ``groups`` (its groups'
        ``(ids, words, paths)`` after the E-step, held by every rank), cut to the share's longest."""
        lo, hi = self._share(len(gidx))
        n = self.global_lengths[gidx[lo:hi]].to(self.device)
        T = int(n.max()) if hi > lo else 1
        xz = torch.zeros(2, hi - lo, T, dtype=torch.long, device=self.device)
        start = 0
        for ids, words, paths in groups:
            a, b = max(lo, start), min(hi, start + len(ids))
            if a < b:
                w = min(T, paths.shape[1])
                xz[0, a - lo : b - lo, :w] = words[a - start : b - start, :w]
                xz[1, a - lo : b - lo, :w] = paths[a - start : b - start, :w]
            start += len(ids)
        xz.masked_fill_(~length_mask(n, T), 0)
        return gidx[lo:hi], xz[0], xz[1], n

    def _refresh_phi(self, key: tuple) -> None:
        beta, dtype = self.model.beta, self.model.prior.dtype
        if self.learning.phi_update == "gibbs":
            self.log_phi = dirichlet_log_phi(self.counts, beta, key=mix_key(self.seed, "phi", *key)).to(dtype)
        else:
            self.log_phi = smoothed_log_phi(self.counts, beta).to(dtype)

    def _minibatches(self, epoch: int):
        """``(global ids, mine, shard-local indices)`` of every global minibatch of ``epoch``."""
        order = torch.randperm(self.D, generator=keyed_generator(self.seed, "order", epoch))
        for gidx in order.split(self.learning.batch_size):
            yield (gidx, *self._here(gidx))

    def _here(self, gidx: torch.Tensor):
        """``(mine, local)``: the global documents ``gidx`` this process holds, by global and by
        shard-local index."""
        mine = gidx[(gidx >= self.lo) & (gidx < self.hi)]
        return mine, mine - self.lo

    # ------------------------------------------------------------------ start
    @hot_loop
    @torch.no_grad()
    def initialize(self) -> None:
        """Initial paths (keyed by document), global counts, ``phi``; optional prior pre-training."""
        model, K, V = self.model, self.model.K, self.model.V
        init = self.learning.init
        P = self.sampler.num_particles
        ids_all = torch.arange(self.lo, self.hi)
        if init == "smc":
            unigram = torch.zeros(V, dtype=torch.float64, device=self.device)
            wc = self.shard.word_counts()
            unigram[: wc.numel()] = wc.to(device=self.device, dtype=torch.float64)
            self.reducer.sum(unigram)
            init_log_phi = perturbed_log_phi(unigram, K, model.beta, self.seed, model.prior.dtype)
        for local in torch.arange(len(self.local_lengths)).split(self.learning.batch_size):
            x, n = self._batch(local)
            ids = ids_all[local]
            if self._initial_paths is not None:
                z = self._initial_paths[local.to(self._initial_paths.device), : x.shape[1]].to(self.device)
            elif init == "smc":
                u = KeyedUniforms(self.seed, ids, n, x.shape[1], P, (0,), stream="init",
                                  device=self.device, dtype=model.prior.dtype)
                z = csmc_sweep(model.prior, init_log_phi, x, n, P, None, resampling="systematic", uniforms=u).path
            elif init == "uniform":
                z = (keyed_rows(ids, x.shape[1], self.seed, "init", 0) * K).long().clamp_(max=K - 1)
                z = z.masked_fill_(~length_mask(n.cpu(), x.shape[1]), 0).to(self.device)
            else:
                raise ValueError(f"init={init!r} needs initial_paths (the estimator computes them)")
            self._set_paths(local, z)
        self.counts = self.reducer.sum(self._local_counts())
        self._refresh_phi((-1,))
        for it in range(self.learning.init_steps):
            for mb, (gidx, mine, local) in enumerate(self._minibatches(-1 - it)):
                self._mstep_minibatch(gidx, mine, *self._shard_paths(local), (-1 - it, mb))

    def _local_counts(self) -> torch.Tensor:
        K, V = self.model.K, self.model.V
        counts = torch.zeros(K, V, dtype=torch.float64, device=self.device)
        for local in torch.arange(len(self.local_lengths)).split(max(self.learning.batch_size, 256)):
            x, n = self._batch(local)
            counts += topic_word_counts(self.get_paths(local, x.shape[1]), x, n, K, V)
        return counts

    # ------------------------------------------------------------------ steps
    def _shard_paths(self, local):
        """``(z (B, T), n (B,))``: the stored paths and lengths of shard-local documents ``local``."""
        if len(local):
            x, n = self._batch(local)
            return self.get_paths(local, x.shape[1]), n
        return (torch.zeros(0, 1, dtype=torch.long, device=self.device),
                torch.zeros(0, dtype=torch.long, device=self.device))

    def _mstep_minibatch(self, gidx, mine, z, n, key: tuple) -> float:
        """Gradient steps on the global minibatch ``gidx``, this process holding documents ``mine``
        with paths ``z`` ``(B, T)`` and lengths ``n`` ``(B,)`` (the gradients are summed over ranks)."""
        prior = self.model.prior
        total_tokens = int(self.global_lengths[gidx].sum())
        loss = 0.0
        for it in range(self.learning.mstep_iters):
            masks = dropout_masks(prior, mine, n, z.shape[1], self.seed, "dropout", *key, it)
            loss += self.mstep.step(z, n, total_tokens, masks)
        return loss

    @torch.no_grad()
    def _sweep(self, gidx, mine, x, n, old, key: tuple, group=None):
        """One E-step sweep of documents ``mine`` (global ids) of the minibatch or group ``gidx``:
        words ``x`` ``(B, T)``, lengths ``n`` ``(B,)``, current paths ``old`` ``(B, T)``; returns the
        sweep's result (``None`` when ``mine`` is empty).

        With ``emission="collapsed"``, ``group`` is ``(words, paths, rows)``: :meth:`_group`'s
        tensors and ``mine``'s rows in them. The sweep's updates are then Metropolis-Hastings
        proposals that :meth:`_collapsed_acceptor` accepts or rejects, keeping ``self.counts`` and
        the group's ``paths`` current as it goes.
        """
        model, P, estep = self.model, self.sampler.num_particles, self.estep
        T = x.shape[1]
        log_emission, accept, block_tables = None, None, None
        if estep.emission == "leave_out":
            log_emission = leave_out_log_emission(self.counts, old, x, n, model.beta)
        elif estep.emission == "collapsed":
            log_emission, accept, block_tables = self._collapsed_acceptor(gidx, n, key, *group)
            if len(mine) == 0:  # no documents here: take part in the (collective) decisions only
                blocks = block_starts(T, self.sampler.block_size, self.sampler.block_stride) \
                    if estep.kernel == "blocked" else [None]
                none = torch.zeros(0, device=self.device, dtype=torch.float64)
                rows = torch.zeros(0, dtype=torch.long, device=self.device)
                for i in range(len(blocks)):
                    accept(i, rows, old, old, none)
                return None
        dtype = model.prior.dtype
        if estep.kernel == "blocked":
            def block_uniforms(i, s, block_lengths, block_T, rows):
                # Keyed by the documents that reach block i (shorter ones drop out of later blocks).
                return KeyedUniforms(self.seed, mine[rows], block_lengths, block_T, P, key + (i,), device=self.device,
                                     dtype=dtype)

            return blocked_csmc_sweep(model.prior, self.log_phi, x, n, P, old, block_size=self.sampler.block_size,
                                           stride=self.sampler.block_stride, uniforms=block_uniforms,
                                           log_emission=log_emission, accept=accept,
                                           future_lag=self.sampler.future_lag_or_none, block_proposal=block_tables,
                                           resample_below=self.sampler.resample_below_or_none,
                                           resampling=self.sampler.resampling,
                                           final_draw=self.sampler.block_final_draw)
        u = KeyedUniforms(self.seed, mine, n, T, P, key, device=self.device, dtype=dtype)
        res = csmc_sweep(model.prior, self.log_phi, x, n, P, old, resampling=self.sampler.resampling,
                         ancestor_lag=estep.ancestor_lag, uniforms=u, diagnostics=True,
                         log_emission=log_emission)
        if accept is not None:
            keep = accept(0, torch.arange(len(mine), device=self.device), old, res.path,
                          torch.zeros(len(mine), device=self.device, dtype=torch.float64)).unsqueeze(-1)
            res.path = torch.where(keep, res.path, old)
        return res

    def _collapsed_acceptor(self, gidx, n, key: tuple, words, paths_now, slot):
        """``(proposal table (B, T, K) or None, acceptance step, block tables or None)`` of the
        collapsed E-step over the global group ``gidx``.

        Proposals are swept under ``phi`` from the current counts less the tokens that may change
        before each document's decision (:func:`~pyro_ssl.infer.collapsed.visit_order_log_emission`,
        documents visited in ``gidx``'s order): the whole documents for the plain kernel (one table,
        built now), each block's window for the blocked kernel (``block_tables(rows, s, e, current)``,
        built block by block from the group's paths as the decisions leave them). The acceptance
        visits the whole group in its order on every rank (each rank contributes its documents'
        paths to one summed buffer), so every rank takes the same decisions and keeps the same
        counts and group paths (``paths_now``, updated in place): the chain of one process.

        ``words``, ``paths_now`` ``(Bg, Tg)``: :meth:`_group`'s; ``slot``: the (contiguous) rows of the
        documents this rank sweeps, whose lengths are ``n``.
        """
        beta = self.model.beta
        Bg, Tg = words.shape
        pos = torch.arange(Tg, device=self.device)
        gmask = pos.unsqueeze(0) < self.global_lengths[gidx].to(self.device).unsqueeze(-1)

        def tables(s, e, docs=None):  # (Bg, e - s, K) float64 (docs: only those), from the counts and paths now
            return visit_order_log_emission(self.counts, words[None], paths_now[None], gmask[None], s, e, beta, docs)[0]

        def accept(i, rows, current, proposed, log_ratio):
            # One summed buffer: both paths, the lengths, and the kernel's log ratios as their
            # float64 bit patterns (each document's comes from its own rank and zeros from the
            # others, so the integer sum returns the bits unchanged).
            buf = torch.zeros(2 * Bg * Tg + 2 * Bg, dtype=torch.long, device=self.device)
            paths = buf[: 2 * Bg * Tg].view(2, Bg, Tg)
            here = slot[rows]
            paths[0, here] = current.long()
            paths[1, here] = proposed.long()
            buf[2 * Bg * Tg : 2 * Bg * Tg + Bg][here] = n[rows].long()  # documents not in this block: length 0
            buf[2 * Bg * Tg + Bg :][here] = log_ratio.to(torch.float64).view(torch.long)
            buf = self.reducer.sum(buf)
            present = buf[2 * Bg * Tg : 2 * Bg * Tg + Bg]
            mask = pos.unsqueeze(0) < present.unsqueeze(-1)
            extra = buf[2 * Bg * Tg + Bg :].view(torch.float64)
            u = keyed_rows(gidx, 1, self.seed, "accept", *key, i)[:, 0].to(self.device)
            acc = collapsed_mh(self.counts.unsqueeze(0), words[None], mask[None], paths[0][None], paths[1][None],
                               log_q, beta, u[None], extra[None])[0]
            moved = (paths[0] != paths[1]).any(-1)
            self._accepts += torch.stack([(acc & moved).sum(), moved.sum()]).to(self._accepts)
            paths_now.copy_(torch.where((acc & (present > 0)).unsqueeze(-1), paths[1], paths_now))
            return acc[here]

        if self.estep.kernel == "blocked":  # the sweep puts its block tables' ratio in the log ratio
            log_q = None
            first = int(slot[0]) if len(slot) else 0  # slot: this rank's contiguous share of the group
            return None, accept, lambda rows, s, e, current: tables(s, e, (first, first + len(slot)))[slot[rows] - first]
        log_q = tables(0, Tg)[None]  # (1, Bg, Tg, K)
        return log_q[0, slot].to(self.model.prior.dtype), accept, None

    def _collapsed_estep(self, gidx, key: tuple, stats: SweepStats) -> list:
        """The collapsed E-step of the global minibatch ``gidx``, group by group; returns the groups'
        ``(ids, words, paths)`` after it (the same on every rank).

        Every rank holds each group's words and paths (the acceptance, which keeps the counts
        current, reads them all), so each sweeps an even share of the group (:meth:`_share`), not
        the documents it stores, and stores its own from the result.
        """
        groups = []
        for g, sub in enumerate(gidx.split(self._collapsed_group)):
            words, paths = self._group(sub)
            lo, hi = self._share(len(sub))
            n = self.global_lengths[sub[lo:hi]].to(self.device)
            old = paths[lo:hi].clone()
            rows = torch.arange(lo, hi, device=self.device)
            # Padded to the group's longest document, so every rank runs the same block grid and
            # so the same collective acceptance steps.
            res = self._sweep(sub, sub[lo:hi], words[lo:hi], n, old, key + (g,), group=(words, paths, rows))
            if res is not None:
                stats.add(old, res.path, res.ess, res.num_ancestors, length_mask(n, old.shape[1]))
            self._store(sub, paths)
            groups.append((sub, words, paths))
        return groups

    def _estep(self, gidx, key: tuple, stats: SweepStats) -> list:
        """The E-step of the global minibatch ``gidx`` under a fixed or leave-out emission, counts
        updated; returns ``[(gidx, words, new paths)]`` (the same on every rank).

        The same even shares as :meth:`_collapsed_estep`: the minibatch's words and paths are
        summed onto every rank, each sweeps its share, and the new paths are summed back.
        """
        K, V = self.model.K, self.model.V
        words, paths = self._group(gidx)
        lo, hi = self._share(len(gidx))
        n = self.global_lengths[gidx[lo:hi]].to(self.device)
        T = int(n.max()) if hi > lo else 0
        x, old = words[lo:hi, :T], paths[lo:hi, :T]
        delta = torch.zeros(K, V, dtype=torch.float64, device=self.device)
        new = torch.zeros_like(paths)
        if hi > lo:
            res = self._sweep(gidx, gidx[lo:hi], x, n, old, key)
            stats.add(old, res.path, res.ess, res.num_ancestors, length_mask(n, T))
            delta += topic_word_counts(res.path, x, n, K, V)
            delta -= topic_word_counts(old, x, n, K, V)
            new[lo:hi, :T] = res.path
        self.counts += self.reducer.sum(delta)
        self.counts.clamp_(min=0.0)  # float round-off only; counts are integers
        self._store(gidx, self.reducer.sum(new))
        return [(gidx, words, new)]

    @hot_loop
    def run_epoch(self) -> dict:
        """E-step, ``phi`` update and M-step over every global minibatch; returns the epoch's entry."""
        if self.counts is None:
            self.initialize()
        model, learning = self.model, self.learning
        t0 = time.perf_counter()
        stats = SweepStats.zeros(self.T_max, self.device)
        acc = torch.zeros(2, dtype=torch.float64, device=self.device)  # log joint, M-step loss
        e_seconds = m_seconds = 0.0
        n_steps = 0
        self.estep = estep_for_epoch(self.config, self.epoch)
        collapsed = self.estep.emission == "collapsed"
        self._accepts = torch.zeros(2, dtype=torch.float64, device=self.device)  # accepted, changed proposals
        for mb, (gidx, _, _) in enumerate(self._minibatches(self.epoch)):
            te = time.perf_counter()
            for s in range(learning.sweeps_per_epoch):
                sweep = self._collapsed_estep if collapsed else self._estep
                groups = sweep(gidx, (self.epoch, s), stats)
                self._refresh_phi((self.epoch, mb, s))
            tm = time.perf_counter()
            e_seconds += tm - te
            # Every rank holds the minibatch's words and new paths: each trains on, then scores, an even share.
            mine, x, z, n = self._shared_batch(gidx, groups)
            acc[1] += self._mstep_minibatch(gidx, mine, z, n, (self.epoch, mb))
            n_steps += learning.mstep_iters
            m_seconds += time.perf_counter() - tm
            if len(mine):
                with torch.no_grad():
                    acc[0] += log_joint(model.prior, self.log_phi, x, z, n).sum()
        self.reducer.sum(acc)
        self.reducer.sum(stats.sums)
        self.epoch += 1
        seconds = time.perf_counter() - t0
        entry = {
            "epoch": self.epoch,
            "log_joint_per_token": float(acc[0]) / max(int(self.global_lengths.sum()), 1),
            "mstep_loss": float(acc[1]) / max(n_steps, 1),
            "seconds": seconds,
            "estep_seconds": e_seconds,
            "mstep_seconds": m_seconds,
            "docs_per_second": self.D / seconds,
            "world_size": self.reducer.world_size,
            "warmup": self.estep.warmup,
        }
        entry.update(stats.summary())
        if collapsed:  # the same on every rank: every rank takes every decision
            entry["acceptance_rate"] = float(self._accepts[0] / self._accepts[1].clamp_min(1))
        return entry

    # ------------------------------------------------------------------ state
    def gather_paths(self) -> torch.Tensor:
        """All documents' paths, flat in global token order (a collective in a data-parallel fit)."""
        W = self.reducer.world_size
        if W == 1:
            return self.paths.long().cpu()
        off = self.global_offsets()
        sizes = []
        for r in range(W):
            lo, hi = shard_bounds(self.D, r, W)
            sizes.append(int(off[hi] - off[lo]))
        return self.reducer.gather_flat(self.paths, sizes).long().cpu()

    def fingerprint(self, V: int) -> str:
        """SHA-256 of every document's token ids, the lengths and ``V``, the same in any process layout.

        Each document contributes a keyed 31-bit hash of its ids, summed over documents (and
        ranks: integer sums are exact), so no process needs the others' tokens.
        """
        ids = torch.arange(self.lo, self.hi)
        total = 0
        for local in torch.arange(len(self.local_lengths)).split(4096):
            x, n = self.shard.padded(local)
            x = x.cpu().numpy()
            for row, d, L in zip(x, ids[local].tolist(), n.tolist()):
                total += mix_key(d, zlib.crc32(row[:L].astype("int64").tobytes())) & 0x7FFFFFFF
        summed = self.reducer.sum(torch.tensor([total], dtype=torch.int64))
        h = hashlib.sha256(b"pyro-ssl-data-v2")
        h.update(self.global_lengths.numpy().tobytes())
        h.update(f"{int(summed[0])}:{int(V)}".encode())
        return h.hexdigest()

    def global_offsets(self) -> torch.Tensor:
        """``(D + 1,)`` offsets of each document's path in :meth:`gather_paths`."""
        off = torch.zeros(self.D + 1, dtype=torch.long)
        torch.cumsum(self.global_lengths, 0, out=off[1:])
        return off

    def state_dict(self) -> dict:
        """Plain tensors and containers to continue exactly, in a process group of any size."""
        return {
            "epoch": self.epoch,
            "prior": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "counts": self.counts.cpu(),
            "log_phi": self.log_phi.detach().cpu(),
            "paths": self.gather_paths().to(torch.int32),
            "mstep": self.mstep.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`, checking every piece first (a checkpoint is user input).

        Raises:
            ValueError: a missing entry, a wrong shape or dtype, paths outside ``[0, K)``,
                counts that are not the counts of the paths, non-finite values, an Adam state
                that does not fit the parameters. Nothing is modified when it raises.
        """
        K, V = self.model.K, self.model.V
        if not isinstance(state, dict):
            raise ValueError(f"EM state must be a dict, got {type(state).__name__}")
        missing = [k for k in ("epoch", "prior", "counts", "log_phi", "paths", "mstep") if k not in state]
        if missing:
            raise ValueError(f"EM state is missing {missing}")
        epoch = state["epoch"]
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an integer >= 0, got {epoch!r}")
        off = self.global_offsets()
        paths = state["paths"]
        if not torch.is_tensor(paths) or paths.ndim != 1 or paths.dtype not in (torch.int32, torch.int64):
            raise ValueError("paths must be a 1-D integer tensor")
        if paths.numel() != int(off[-1]):
            raise ValueError(f"checkpoint holds {paths.numel()} path entries, the data has {int(off[-1])} tokens")
        if paths.numel() and (int(paths.min()) < 0 or int(paths.max()) >= K):
            raise ValueError(f"paths hold topics in [{int(paths.min())}, {int(paths.max())}], outside [0, {K})")
        counts, log_phi = state["counts"], state["log_phi"]
        for name, t in (("counts", counts), ("log_phi", log_phi)):
            if not torch.is_tensor(t) or tuple(t.shape) != (K, V) or not t.is_floating_point():
                got = tuple(t.shape) if torch.is_tensor(t) else type(t).__name__
                raise ValueError(f"{name} must be a ({K}, {V}) float tensor, got {got}")
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name} holds NaN or infinite values")
        norm = log_phi.double().logsumexp(-1)
        if not torch.allclose(norm, torch.zeros_like(norm), atol=1e-3):
            raise ValueError("log_phi rows do not normalise")
        prior = state["prior"]
        expected = self.model.state_dict()
        if not isinstance(prior, dict) or set(prior) != set(expected):
            raise ValueError(f"prior state must hold {sorted(expected)}")
        for k, ref in expected.items():
            t = prior[k]
            if not torch.is_tensor(t) or t.shape != ref.shape or t.dtype != ref.dtype:
                raise ValueError(f"prior tensor {k!r} must be {tuple(ref.shape)} {ref.dtype}")
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise ValueError(f"prior tensor {k!r} holds NaN or infinite values")
        self._check_adam(state["mstep"])
        old_paths = self.paths
        self.paths = paths[int(off[self.lo]) : int(off[self.hi])].to(device=self.device, dtype=torch.int32)
        counts = counts.to(device=self.device, dtype=torch.float64)
        # The counts are a function of the paths and the data: recount (integers in float64, exact)
        # so a flipped count, or paths for other data, cannot pass. A collective in a group.
        recount = self.reducer.sum(self._local_counts())
        if not torch.equal(recount, counts):
            self.paths = old_paths
            raise ValueError("counts are not the topic-word counts of the checkpoint's paths")
        self.model.load_state_dict(prior)
        self.counts = counts
        self.epoch = int(epoch)
        self.log_phi = log_phi.to(device=self.device, dtype=self.model.prior.dtype)
        self.mstep.load_state_dict(state["mstep"])

    def _check_adam(self, adam) -> None:
        """The optimiser state fits the prior's parameters: one Adam state per parameter, moments
        of its shape, finite, second moments >= 0, a step count >= 0."""
        if not isinstance(adam, dict):
            raise ValueError(f"Adam state must be a dict, got {type(adam).__name__}")
        if not adam:
            return  # before the first M-step
        params = dict(self.model.prior.named_parameters())
        names = {f"ssl_prior$$${k}": v for k, v in params.items()}
        if set(adam) != set(names):
            raise ValueError(f"Adam state is for {sorted(adam)[:3]}..., expected the prior's parameters {sorted(names)[:3]}...")
        for name, opt in adam.items():
            if not isinstance(opt, dict) or not isinstance(opt.get("state"), dict) \
                    or not isinstance(opt.get("param_groups"), list):
                raise ValueError(f"Adam state of {name!r} must hold 'state' and 'param_groups'")
            for st in opt["state"].values():
                if not isinstance(st, dict):
                    raise ValueError(f"Adam state of {name!r} is not a dict")
                step = st.get("step")
                step = float(step) if torch.is_tensor(step) and step.numel() == 1 else step
                if not isinstance(step, (int, float)) or not math.isfinite(step) or step < 0:
                    raise ValueError(f"Adam step of {name!r} must be a number >= 0, got {step!r}")
                for key in ("exp_avg", "exp_avg_sq"):
                    t = st.get(key)
                    if not torch.is_tensor(t) or t.shape != names[name].shape:
                        raise ValueError(f"Adam {key} of {name!r} must have shape {tuple(names[name].shape)}")
                    if not bool(torch.isfinite(t).all()) or (key == "exp_avg_sq" and bool((t < 0).any())):
                        raise ValueError(f"Adam {key} of {name!r} holds invalid values")
