"""Evaluation by the particle filter: completion perplexity and held-out likelihood (SPEC 4).

All functions take a prior and ``log_phi`` (the pieces of a fitted model), padded word ids
``(B, T)`` and lengths ``(B,)``, and process documents in chunks (:func:`default_chunk_size`), so
memory stays bounded by ``chunk_size * P * (4 H + K)`` per step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .baselines.base import perplexity
from .config import check_int
from .data.shard import shard_bounds
from .model import LSTMPrior, length_mask
from .runtime import no_autograd, run_shares
from .smc.csmc import particle_filter
from .smc.resampling import get_resampler
from .smc.uniforms import KeyedStepUniforms

__all__ = [
    "perplexity",
    "Estimate",
    "filter_log_increments",
    "seeds_log_increments",
    "held_out_sums",
    "default_chunk_size",
    "completion_log_likelihood",
    "heldout_log_likelihood",
    "completion_perplexity",
    "replicate",
]


@dataclass
class Estimate:
    """A replicated Monte Carlo estimate of *one fitted model*: ``mean`` and ``std`` over
    particle-filter seeds, and every value.

    ``std`` is the evaluator's Monte Carlo error only; it says nothing about how much the score
    varies between training runs (training seeds), which ``docs/results.md`` reports apart.
    """

    mean: float
    std: float
    values: list[float]
    num_particles: int

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"{self.mean:.2f} ± {self.std:.2f} (sd over {len(self.values)} particle-filter seeds, "
                f"P={self.num_particles}: the evaluator's Monte Carlo error, not training-seed spread)")


CHUNK_FLOATS = 1 << 21
"""Floats of per-step work, ``documents x P x (4 H + K)`` (gates and logits), per filter pass by
default: they then stay in the cache, while a pass still holds enough rows that the per-step
overhead of small operations stays small (a tiny model takes many documents per pass).
``OMP_NUM_THREADS=1 python benchmarks/bench_eval.py --docs 60 --chunks 5,all`` (K = 50, H = 64,
``P`` = 1,000, 6 documents per pass) is in ``docs/performance.md``."""


def default_chunk_size(num_particles: int, K: int, hidden_size: int = 64, device="cpu") -> int:
    """Documents per filter pass (at least one): on a CPU :data:`CHUNK_FLOATS` of per-step work;
    on a GPU, which wants large passes, about 2e7 floats of ``(chunk, P, K)`` (the memory bound)."""
    P, K = max(int(num_particles), 1), max(int(K), 1)
    if torch.device(device).type != "cpu":
        return max(1, int(2e7 // (P * K)))
    return max(1, CHUNK_FLOATS // (4 * int(hidden_size) + K) // P)


def seeds_log_increments(
    prior: LSTMPrior,
    log_phi: torch.Tensor,
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    num_particles: int = 1000,
    seeds=(0,),
    *,
    resampling: str = "systematic",
    chunk_size: int | None = None,
    workers: int = 1,
    rows: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Particle-filter estimates of ``log p(x_t | x_<t)`` under every filter seed, ``(S, B, T)``
    (0 at padding); with ``rows=(lo, hi)`` only those rows, ``(S, hi - lo, T)``, keyed as in the
    whole batch (what one rank of a data-parallel fit scores of a validation set).

    On a CPU every document's filter draws from its own stream, keyed by ``(seed, row)``
    (:class:`~pyro_ssl.smc.uniforms.KeyedStepUniforms`), so a row's estimates depend neither on
    ``chunk_size`` nor on the other rows nor on ``workers`` (up to floating-point round-off in
    the batched products; a draw that round-off flips is rare and leaves an equally valid
    estimate), nor on the device.

    Args:
        chunk_size: documents per filter pass (default :func:`default_chunk_size`).
        workers: processes, each filtering an even share of the rows on one thread
            (:func:`~pyro_ssl.runtime.run_shares`; CPU models only). Worth it when the work is
            well above the processes' start-up of about two seconds.
    """
    B = tokens.shape[0]
    workers = check_int("workers", workers, 1)
    seeds = tuple(int(s) for s in seeds)
    args = (prior, log_phi, tokens, lengths, int(num_particles), seeds, resampling, chunk_size)
    if rows is not None:
        lo, hi = int(rows[0]), int(rows[1])
        if not 0 <= lo <= hi <= B:
            raise ValueError(f"rows must be (lo, hi) with 0 <= lo <= hi <= {B}, got {rows!r}")
        return _row_increments(*args, lo, hi)
    if workers == 1 or B < 2:
        return _row_increments(*args, 0, B)
    if prior.device.type != "cpu":
        raise ValueError(f"workers={workers} starts CPU processes; a model on {prior.device} scores with workers=1")
    W = min(workers, B)
    return torch.cat(run_shares(_row_increments, args, [shard_bounds(B, r, W) for r in range(W)]), 1)


@no_autograd
def _row_increments(prior, log_phi, tokens, lengths, num_particles, seeds, resampling, chunk_size, lo, hi):
    """:func:`seeds_log_increments` of rows ``[lo, hi)``: ``(S, hi - lo, T)``, keyed by their rows."""
    device = prior.device
    if chunk_size is None:
        chunk_size = default_chunk_size(num_particles, prior.K, prior.hidden_size, device)
    resampler = get_resampler(resampling)
    out = torch.zeros(len(seeds), hi - lo, tokens.shape[1], dtype=prior.dtype, device=device)
    for start in range(lo, hi, chunk_size):
        stop = min(start + chunk_size, hi)
        n = lengths[start:stop].to(device)
        T = int(n.max())
        x = tokens[start:stop, :T].to(device)
        for i, seed in enumerate(seeds):
            u = KeyedStepUniforms(seed, torch.arange(start, stop), num_particles,
                                  resample_slots=resampler.num_uniforms(num_particles), device=device, dtype=prior.dtype)
            res = particle_filter(prior, log_phi, x, n, num_particles, resampling=resampler, uniforms=u,
                                  trace=False)  # increments only: no (T, B, P) ancestry
            out[i, start - lo : stop - lo, :T] = res.log_incr
    return out


def filter_log_increments(
    prior: LSTMPrior,
    log_phi: torch.Tensor,
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    num_particles: int = 1000,
    *,
    resampling: str = "systematic",
    seed: int = 0,
    chunk_size: int | None = None,
    workers: int = 1,
) -> torch.Tensor:
    """Particle-filter estimates of ``log p(x_t | x_<t)``, ``(B, T)`` (0 at padding): one seed
    of :func:`seeds_log_increments`."""
    return seeds_log_increments(prior, log_phi, tokens, lengths, num_particles, (seed,), resampling=resampling,
                                chunk_size=chunk_size, workers=workers)[0]


def replicate(fn, seeds, num_particles) -> Estimate:
    """``fn(seed)`` for every particle-filter seed, as an :class:`Estimate` (mean, sd, values)."""
    return _estimate([float(fn(s)) for s in seeds], num_particles)


def _estimate(values: list[float], num_particles: int) -> Estimate:
    std = float(torch.tensor(values, dtype=torch.float64).std()) if len(values) > 1 else 0.0
    return Estimate(sum(values) / len(values), std, values, num_particles)


def _held_out(lengths: torch.Tensor, T: int, T1: int, device) -> torch.Tensor:
    """``(B, T)`` bool: the positions ``t >= T1`` inside each document."""
    return length_mask(lengths.to(device), T) & (torch.arange(T, device=device) >= T1)


def held_out_sums(prior: LSTMPrior, log_phi: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor, T1: int,
                  num_particles: int, seeds, *, rows: tuple[int, int] | None = None,
                  resampling: str = "systematic", workers: int = 1) -> tuple[torch.Tensor, int]:
    """``(S,)`` float64: per seed, the summed ``log p(x_t | x_<t)`` over positions ``t >= T1`` of
    the documents (of ``rows``, keyed as in the whole batch), and how many positions that is.
    Every score here is one of these; shares of the rows add up to the whole (what the ranks of
    a data-parallel fit sum). The filter runs over whole documents either way."""
    inc = seeds_log_increments(prior, log_phi, tokens, lengths, num_particles, seeds, resampling=resampling,
                               workers=workers, rows=rows)
    lo, hi = (0, tokens.shape[0]) if rows is None else rows
    held = _held_out(lengths[lo:hi], tokens.shape[1], T1, inc.device)
    return torch.stack([one[held].sum().double() for one in inc]) if len(inc) else inc.new_zeros(0), int(held.sum())


def completion_log_likelihood(
    prior: LSTMPrior,
    log_phi: torch.Tensor,
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    T1: int,
    num_particles: int = 1000,
    *,
    seed: int = 0,
    resampling: str = "systematic",
    workers: int = 1,
) -> tuple[float, int]:
    """Summed ``log p(x_{T1:len} | x_{<T1})`` over documents and the number of held-out tokens."""
    ll, n = held_out_sums(prior, log_phi, tokens, lengths, T1, num_particles, (seed,), resampling=resampling,
                          workers=workers)
    return float(ll[0]), n


def completion_perplexity(
    prior: LSTMPrior,
    log_phi: torch.Tensor,
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    T1: int,
    num_particles: int = 1000,
    seeds=(0, 1, 2),
    resampling: str = "systematic",
    workers: int = 1,
) -> Estimate:
    """Document-completion perplexity, replicated over filter seeds (mean and spread); every seed
    in one pass over the documents (one start of the ``workers`` processes)."""
    ll, n = held_out_sums(prior, log_phi, tokens, lengths, T1, num_particles, seeds, resampling=resampling,
                          workers=workers)
    return _estimate([perplexity(float(x), n) for x in ll], num_particles)


def heldout_log_likelihood(
    prior: LSTMPrior,
    log_phi: torch.Tensor,
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    num_particles: int = 1000,
    seeds=(0, 1, 2),
    resampling: str = "systematic",
    workers: int = 1,
) -> Estimate:
    """Per-token ``log Zhat`` over unseen documents, replicated over filter seeds."""
    ll, n = held_out_sums(prior, log_phi, tokens, lengths, 0, num_particles, seeds, resampling=resampling,
                          workers=workers)
    return _estimate([float(x) / n for x in ll], num_particles)
