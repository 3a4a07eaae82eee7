"""The M-steps of stochastic EM: ``phi`` from topic-word counts, ``theta`` by Pyro's optimiser."""

from __future__ import annotations

import pyro
import pyro.optim
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO

from ..model import LSTMPrior, TopicSequence, length_mask

__all__ = ["topic_word_counts", "smoothed_log_phi", "dirichlet_log_phi", "leave_out_log_emission", "PriorMStep"]


def topic_word_counts(
    z: torch.Tensor, x: torch.Tensor, lengths: torch.Tensor, K: int, V: int, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Counts ``n[k, w]`` of word ``w`` assigned topic ``k``.

    Args:
        z, x: ``(B, T)`` topics and words (or ``(B, P, T)`` with per-particle ``weights``).
        lengths: ``(B,)``.
        weights: optional ``(B, P)`` weights over particle paths (Rao-Blackwellised counts).
    Returns:
        ``(K, V)`` float counts (dtype of ``weights`` or float64).
    """
    mask = length_mask(lengths, x.shape[-1])
    if weights is None:
        w = mask.to(torch.float64)
    else:
        w = weights.unsqueeze(-1) * mask.unsqueeze(1)
        x = x.unsqueeze(1).expand_as(z)
    flat = (z.clamp(0, K - 1) * V + x).reshape(-1)
    counts = torch.zeros(K * V, dtype=w.dtype, device=z.device)
    counts.index_add_(0, flat, w.reshape(-1))
    return counts.view(K, V)


def smoothed_log_phi(counts: torch.Tensor, beta: float) -> torch.Tensor:
    """``log phi_k[w] = log((n_kw + beta) / (n_k + V beta))``, ``(K, V)``."""
    smoothed = counts + beta
    return smoothed.log() - smoothed.sum(-1, keepdim=True).log()


def leave_out_log_emission(
    counts: torch.Tensor, z: torch.Tensor, x: torch.Tensor, lengths: torch.Tensor, beta: float
) -> torch.Tensor:
    """Emission log-probabilities of each document's words under topics fitted to the *other* documents.

    ``log phi^{-d}_k[x_t] = log((n_kw - n^d_kw + beta) / (n_k - n^d_k + V beta))`` at ``w = x_t``,
    where ``n^d`` are document ``d``'s own counts under its current path ``z``. With its own
    counts included, a rare word is pulled back to whatever topic it was last given (its own
    assignment is most of ``n_kw``), which freezes the early, uninformed assignments; leaving
    the document out is the blocked-collapsed update of LDA's Gibbs samplers, to first order.

    Args:
        counts: ``(K, V)`` counts over all training documents (including these).
        z, x: ``(B, T)`` current paths and words; lengths ``(B,)``.
    Returns:
        ``(B, T, K)``.
    """
    K, V = counts.shape
    mask = length_mask(lengths, x.shape[1])
    onehot = torch.nn.functional.one_hot(z.clamp(0, K - 1), K).to(counts.dtype) * mask.unsqueeze(-1)
    same_word = (x.unsqueeze(2) == x.unsqueeze(1)).to(counts.dtype)  # (B, T, T)
    own_kw = same_word @ onehot  # (B, T, K): this document's count of (k, x_t)
    own_k = onehot.sum(1, keepdim=True)  # (B, 1, K)
    n_kw = counts.T[x]  # (B, T, K)
    num = (n_kw - own_kw).clamp_min(0.0) + beta
    den = (counts.sum(-1) - own_k).clamp_min(0.0) + V * beta
    return num.log() - den.log()


def dirichlet_log_phi(counts: torch.Tensor, beta: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A draw of ``log phi`` from its conditional ``Dirichlet(n_k + beta)`` (Gibbs step), ``(K, V)``.

    Drawn through normalised Gamma variates with ``torch._standard_gamma`` so a seeded
    generator is not needed by torch's Dirichlet; the global RNG is used (seeded by callers).
    """
    g = torch._standard_gamma((counts + beta).to(torch.float64))
    g = g.clamp_min(torch.finfo(torch.float64).tiny)
    return (g.log() - g.sum(-1, keepdim=True).log()).to(counts.dtype)


class PriorMStep:
    """Maximum-likelihood steps for ``theta`` on sampled topic paths, with Pyro's SVI.

    With an empty guide and the topic paths observed, ``Trace_ELBO`` is exactly
    ``-log p(z* | theta)`` (scaled per token), so SVI is Pyro's idiomatic gradient step on the
    teacher-forced likelihood. Every call runs in a fresh private param-store scope: Pyro's
    optimiser keys its state by parameter object, so nothing is lost between calls, and
    several models can be trained in one process without their names clashing.

    Args:
        prior: the LSTM prior to train.
        lr: Adam learning rate.
        clip_norm: gradient-norm clip per parameter (Pyro's ``clip_args``).
    """

    def __init__(self, prior: LSTMPrior, lr: float = 1e-2, clip_norm: float = 5.0):
        self.prior = prior
        self.optim = pyro.optim.Adam({"lr": lr}, {"clip_norm": clip_norm})
        self.svi = SVI(self._model, self._guide, self.optim, Trace_ELBO())

    def _model(self, z: torch.Tensor, lengths: torch.Tensor, weight: torch.Tensor | None):
        pyro.module("ssl_prior", self.prior)
        if weight is None:
            scale = 1.0 / max(int(lengths.sum()), 1)
        else:
            scale = weight / (weight * lengths).sum().clamp_min(1e-12)
        with pyro.plate("docs", z.shape[0]), poutine.scale(scale=scale):
            pyro.sample("z", TopicSequence(self.prior, lengths, z.shape[-1]), obs=z)

    def _guide(self, z, lengths, weight):
        pass

    def step(self, z: torch.Tensor, lengths: torch.Tensor, weight: torch.Tensor | None = None) -> float:
        """One gradient step on ``-sum_b w_b log p(z_b | theta) / sum_b w_b len_b``; returns it.

        Args:
            z: ``(B, T)`` topic paths; lengths ``(B,)``.
            weight: optional ``(B,)`` per-path weights (e.g. final particle weights when
                every particle's path of a document is used); uniform when omitted.
        """
        self.prior.train()
        try:
            with pyro.get_param_store().scope():
                loss = self.svi.step(z, lengths, weight)
        finally:
            self.prior.eval()
        return float(loss)

    def state_dict(self) -> dict:
        """Adam state keyed by parameter name (empty before the first step)."""
        with pyro.get_param_store().scope():
            pyro.module("ssl_prior", self.prior)
            return self.optim.get_state() if self.optim.optim_objs else {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            with pyro.get_param_store().scope():
                pyro.module("ssl_prior", self.prior)
                self.optim.set_state(state)
