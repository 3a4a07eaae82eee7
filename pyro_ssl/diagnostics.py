"""Convergence and sampler diagnostics: several chains, ArviZ export, per-sweep statistics.

Two kinds of diagnostics:

* **Across chains** (:func:`run_chains`, :func:`histories_to_inference_data`,
  :func:`convergence_summary`): fit the same model from several seeds on the same data and
  compare the per-epoch traces (log joint per token, held-out log likelihood per token) with
  ArviZ's R-hat and effective sample size. Chains that agree have R-hat near 1.
* **Within a sweep** (:func:`update_rate_matrix`, :func:`ess_matrix`,
  :func:`ancestors_matrix`): every history entry of :meth:`SSL.fit` records, by position
  ``t``, the share of documents whose topic at ``t`` changed in the epoch's sweep, the mean
  ESS of the particle weights after step ``t``, and the mean number of distinct step-``t``
  ancestors among the final particles. Path degeneracy of plain conditional SMC shows as a low
  update rate and a single ancestor at early positions; ancestor sampling lifts both.

Example::

    chains, idata = run_chains(corpus, num_chains=4, epochs=20, K=20)
    convergence_summary(idata)["log_joint_per_token"]["rhat"]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .estimator import SSL

__all__ = [
    "run_chains",
    "histories_to_inference_data",
    "convergence_summary",
    "history_trace",
    "position_matrix",
    "update_rate_matrix",
    "ess_matrix",
    "ancestors_matrix",
    "TRACE_KEYS",
]

TRACE_KEYS = ("log_joint_per_token", "heldout_log_lik", "completion_ppl")
"""Per-epoch scalars exported as posterior traces when present in every chain's history."""

_STAT_KEYS = ("mstep_loss", "seconds", "estep_seconds", "mstep_seconds", "eval_seconds")
_POSITION_KEYS = ("update_rate", "ess", "ancestors")


def _history(h):
    """A history list from a history or anything with ``.history`` (an SSL)."""
    return h.history if hasattr(h, "history") else h


def history_trace(history, key: str) -> np.ndarray:
    """``(epochs,)`` float array of ``entry[key]`` (NaN where an epoch lacks it)."""
    history = _history(history)
    return np.array([float(e.get(key, math.nan)) for e in history], dtype=np.float64)


def position_matrix(history, key: str) -> np.ndarray:
    """``(epochs, T)`` array of a by-position statistic (``"update_rate"``, ``"ess"``,
    ``"ancestors"``); rows shorter than the longest are padded with NaN."""
    history = _history(history)
    rows = [list(e.get(key, [])) for e in history]
    T = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), T), np.nan, dtype=np.float64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def update_rate_matrix(history) -> np.ndarray:
    """``(epochs, T)``: share of documents whose topic at position ``t`` changed in each epoch's
    sweep (low values at early positions are path degeneracy)."""
    return position_matrix(history, "update_rate")


def ess_matrix(history) -> np.ndarray:
    """``(epochs, T)``: mean effective sample size of the particle weights after step ``t``."""
    return position_matrix(history, "ess")


def ancestors_matrix(history) -> np.ndarray:
    """``(epochs, T)``: mean number of distinct step-``t`` ancestors of the final particles."""
    return position_matrix(history, "ancestors")


def histories_to_inference_data(histories: Sequence, burn_in: int = 0):
    """ArviZ ``InferenceData`` from one training history per chain.

    ``posterior`` holds the per-epoch traces of :data:`TRACE_KEYS` present in every chain
    (``heldout_log_lik`` is derived from ``completion_ppl`` as ``-log ppl`` when only the
    latter was recorded), shape ``(chain, draw)``; ``sample_stats`` holds the M-step loss and
    timings ``(chain, draw)`` and the by-position sampler statistics
    ``(chain, draw, position)`` (``update_rate``, ``ess``, ``ancestors``). Chains are cut to
    the shortest history; the first ``burn_in`` epochs are dropped.

    Args:
        histories: per chain, a ``history`` list or a fitted :class:`~pyro_ssl.SSL`.
        burn_in: epochs to drop from the start of every chain.
    """
    import arviz as az

    hs = [list(_history(h))[burn_in:] for h in histories]
    if not hs or min(len(h) for h in hs) == 0:
        raise ValueError("every chain needs at least one epoch of history after burn_in")
    n = min(len(h) for h in hs)
    hs = [h[:n] for h in hs]

    def has(key):
        return all(all(key in e for e in h) for h in hs)

    posterior = {}
    for key in TRACE_KEYS:
        if has(key):
            posterior[key] = np.stack([history_trace(h, key) for h in hs])
    if "heldout_log_lik" not in posterior and "completion_ppl" in posterior:
        posterior["heldout_log_lik"] = -np.log(posterior["completion_ppl"])
    stats, dims = {}, {}
    for key in _STAT_KEYS:
        if has(key):
            stats[key] = np.stack([history_trace(h, key) for h in hs])
    for key in _POSITION_KEYS:
        if has(key):
            mats = [position_matrix(h, key) for h in hs]
            T = max(m.shape[1] for m in mats)
            arr = np.full((len(hs), n, T), np.nan)
            for c, m in enumerate(mats):
                arr[c, :, : m.shape[1]] = m
            stats[key] = arr
            dims[key] = ["position"]
    epochs = np.array([int(e.get("epoch", i + 1)) for i, e in enumerate(hs[0])])
    return az.from_dict(posterior=posterior, sample_stats=stats or None, dims=dims or None,
                        coords={"draw": epochs})


def _is_completion_set(eval_data) -> bool:
    return isinstance(eval_data, tuple) and len(eval_data) == 3 and isinstance(eval_data[2], int)


def run_chains(
    data,
    num_chains: int = 4,
    epochs: int = 20,
    *,
    eval_data=None,
    eval_particles: int = 100,
    seeds: Sequence[int] | None = None,
    progress: bool = False,
    burn_in: int = 0,
    **ssl_kwargs,
):
    """Fit ``num_chains`` independent particle-Gibbs chains (different seeds, same data).

    Args:
        data: training documents (anything :meth:`SSL.fit` takes).
        num_chains: number of chains.
        epochs: epochs per chain (one draw of every trace per epoch).
        eval_data: optional held-out data scored every epoch: a completion set
            ``(tokens, lengths, T1)`` (recorded as ``completion_ppl`` and its per-token log
            likelihood ``heldout_log_lik = -log ppl``), or held-out documents (anything
            :meth:`SSL.score` takes; recorded as per-token ``heldout_log_lik``).
        eval_particles: particle-filter particles for the evaluation.
        seeds: one seed per chain (default ``seed, seed + 1, ...`` with ``seed`` from
            ``ssl_kwargs``, 0 if absent).
        progress: show each fit's progress bar.
        burn_in: epochs dropped from the returned ``InferenceData`` (histories keep them).
        **ssl_kwargs: :class:`~pyro_ssl.SSL` arguments (``K``, ``num_particles``, ...) and
            ``vocab_size``.

    Returns:
        ``(chains, idata)``: the fitted :class:`~pyro_ssl.SSL` of every chain and ArviZ
        ``InferenceData`` from :func:`histories_to_inference_data`.
    """
    if num_chains < 1:
        raise ValueError(f"num_chains must be >= 1, got {num_chains}")
    base = int(ssl_kwargs.pop("seed", 0))
    vocab_size = ssl_kwargs.pop("vocab_size", None)
    seeds = list(seeds) if seeds is not None else [base + c for c in range(num_chains)]
    if len(seeds) != num_chains:
        raise ValueError(f"got {len(seeds)} seeds for {num_chains} chains")
    fit_kwargs = {"vocab_size": vocab_size, "progress": progress}
    if eval_data is not None and _is_completion_set(eval_data):
        fit_kwargs.update(eval_data=eval_data, eval_particles=eval_particles)
    elif eval_data is not None:

        def score_heldout(ssl, entry):
            entry["heldout_log_lik"] = ssl.score(eval_data, num_particles=eval_particles, seeds=(entry["epoch"],)).mean

        fit_kwargs["callback"] = score_heldout
    chains = [SSL(seed=s, **ssl_kwargs).fit(data, epochs=epochs, **fit_kwargs) for s in seeds]
    return chains, histories_to_inference_data(chains, burn_in=burn_in)


def convergence_summary(idata, var_names: Sequence[str] | None = None) -> dict:
    """R-hat, bulk and tail ESS (ArviZ), mean and sd of every posterior trace.

    Returns:
        ``{name: {"rhat", "ess_bulk", "ess_tail", "mean", "sd", "chains", "draws"}}``
        (NaN where ArviZ cannot compute a value, e.g. with too few draws).
    """
    import warnings

    import arviz as az

    post = idata.posterior
    names = list(var_names) if var_names is not None else list(post.data_vars)
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ warns about short chains; NaN says it anyway
        rhat = az.rhat(idata, var_names=names)
        bulk = az.ess(idata, var_names=names, method="bulk")
        tail = az.ess(idata, var_names=names, method="tail")
    for name in names:
        v = post[name].values
        out[name] = {
            "rhat": float(rhat[name].values),
            "ess_bulk": float(bulk[name].values),
            "ess_tail": float(tail[name].values),
            "mean": float(np.nanmean(v)),
            "sd": float(np.nanstd(v)),
            "chains": int(v.shape[0]),
            "draws": int(v.shape[1]),
        }
    return out
