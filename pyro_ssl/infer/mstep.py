"""The M-steps of stochastic EM: ``phi`` from topic-word counts, ``theta`` by Pyro's optimiser."""

from __future__ import annotations

import pyro
import pyro.optim
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

from ..model import DropoutMasks, LSTMPrior, TopicSequence, length_mask
from ..smc.uniforms import keyed_document_keep
from .reduce import LOCAL, Reducer

__all__ = [
    "topic_word_counts",
    "smoothed_log_phi",
    "dirichlet_log_phi",
    "leave_out_log_emission",
    "dropout_masks",
    "PriorMStep",
]


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
    B, T = x.shape
    mask = length_mask(lengths, T)
    # This document's count of (k, x_t), linear in T: group the tokens by (document, word)
    # (torch.unique), add each token's topic one-hot into its group, read it back per token.
    # A (B, T, T) same-word matrix would be the same numbers at quadratic memory (80 GB at
    # 100,000 tokens). Sums of 0/1 in float64 are exact, so this equals that formula bit for bit.
    # Padding positions join their (document, word) group with weight 0, as before.
    group = (torch.arange(B, device=x.device).unsqueeze(1) * V + x.clamp(0, V - 1)).reshape(-1)
    uniq, inverse = torch.unique(group, return_inverse=True)
    onehot = torch.nn.functional.one_hot(z.clamp(0, K - 1), K).to(counts.dtype) * mask.unsqueeze(-1)  # (B, T, K)
    own = torch.zeros(uniq.numel(), K, dtype=counts.dtype, device=x.device)
    own.index_add_(0, inverse, onehot.reshape(B * T, K))
    own_kw = own[inverse].view(B, T, K)  # (B, T, K): this document's count of (k, x_t)
    own_k = onehot.sum(1, keepdim=True)  # (B, 1, K)
    n_kw = counts.T[x]  # (B, T, K)
    num = (n_kw - own_kw).clamp_min(0.0) + beta
    den = (counts.sum(-1) - own_k).clamp_min(0.0) + V * beta
    return num.log() - den.log()


def dirichlet_log_phi(counts: torch.Tensor, beta: float, key: int | None = None) -> torch.Tensor:
    """A draw of ``log phi`` from its conditional ``Dirichlet(n_k + beta)`` (Gibbs step), ``(K, V)``.

    Drawn through normalised Gamma variates (``torch._standard_gamma``, which takes no
    generator). With ``key`` the draw is a function of the key alone: torch's RNG is forked
    and seeded with it, so every rank of a data-parallel fit draws the same ``phi`` and the
    caller's RNG stream is untouched; without, torch's global RNG is used.
    """
    alpha = (counts + beta).to(torch.float64)
    if key is None:
        g = torch._standard_gamma(alpha)
    else:
        devices = [alpha.device] if alpha.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(key))
            g = torch._standard_gamma(alpha)
    g = g.clamp_min(torch.finfo(torch.float64).tiny)
    return (g.log() - g.sum(-1, keepdim=True).log()).to(counts.dtype)


def dropout_masks(prior: LSTMPrior, doc_ids: torch.Tensor, lengths: torch.Tensor, T: int, *key) -> DropoutMasks | None:
    """Inverted-dropout masks for a batch of documents, keyed by ``(*key, "dropout", doc)``.

    A document's masks depend on its id and length only (not on its batch or rank), so a
    data-parallel M-step computes the single-process gradient. ``None`` without dropout.
    """
    p = float(prior.drop.p)
    if p == 0.0 or doc_ids.numel() == 0:
        return None
    E, H = prior.embed_dim, prior.hidden_size
    # Equal to ``(keyed_document_uniforms(...) >= p).to(dtype) / (1 - p)`` entry for entry, at a
    # fraction of the cost: the keep decisions by an integer compare, and the kept value from
    # that very division on one element, so it is the same float (``x / (1 - p)`` and
    # ``x * (1 / (1 - p))`` can differ in the last bit).
    keep = keyed_document_keep(doc_ids, lengths, T, E + H, p, *key).to(prior.device)
    scale = torch.ones((), device=prior.device, dtype=prior.dtype) / (1.0 - p)
    # 0 or scale exactly (torch.where is slower here); each mask its own contiguous tensor, so
    # the forward and backward multiplies by it run on dense operands.
    embed, hidden = (part.to(prior.dtype).mul_(scale) for part in keep.split([E, H], dim=-1))
    return DropoutMasks(embed, hidden)


class PriorMStep:
    """Gradient steps for ``theta`` on sampled topic paths, with Pyro's ``Trace_ELBO`` and ``Adam``.

    With an empty guide and the topic paths observed, the ELBO is exactly ``-log p(z* | theta)``
    (scaled by ``1 / tokens in the minibatch``), so this is Pyro's gradient step on the
    teacher-forced likelihood. Gradients pass through ``reducer`` before the optimiser: the
    identity in one process, a sum over ranks in a data-parallel fit, where each rank holds
    some of the minibatch's documents and the scale uses the whole minibatch's token count.
    Every call runs in a private param-store scope: Pyro's optimiser keys its state by
    parameter object, so several models can train in one process without names clashing.

    Args:
        prior: the LSTM prior to train.
        lr: Adam learning rate; clip_norm: gradient-norm clip per parameter.
        reducer: :class:`~pyro_ssl.infer.reduce.Reducer`.
    """

    def __init__(self, prior: LSTMPrior, lr: float = 1e-2, clip_norm: float = 5.0, reducer: Reducer = LOCAL):
        self.prior = prior
        self.optim = pyro.optim.Adam({"lr": lr}, {"clip_norm": clip_norm})
        self.reducer = reducer
        self._elbo = Trace_ELBO()

    def _model(self, z, lengths, scale, masks):
        pyro.module("ssl_prior", self.prior)
        if z.shape[0] == 0:
            return
        with pyro.plate("docs", z.shape[0]), poutine.scale(scale=scale):
            pyro.sample("z", TopicSequence(self.prior, lengths, z.shape[-1], masks), obs=z)

    def _guide(self, *args):
        pass

    def step(self, z: torch.Tensor, lengths: torch.Tensor, total_tokens: int | None = None,
             masks: DropoutMasks | None = None) -> float:
        """One gradient step on ``-sum_b log p(z_b | theta) / total_tokens``; returns this process's share.

        Args:
            z: ``(B, T)`` topic paths (``B`` may be 0 on a rank without documents in the
                minibatch); lengths ``(B,)``.
            total_tokens: tokens of the whole minibatch over all ranks (default: these).
            masks: dropout masks (:func:`dropout_masks`); without them the prior runs in
                eval mode (no dropout).
        """
        total = int(lengths.sum()) if total_tokens is None else int(total_tokens)
        scale = 1.0 / max(total, 1)
        with pyro.get_param_store().scope():
            # Training mode only for cuDNN's RNN backward: dropout is the given masks, and the
            # one-layer LSTM has none of its own, so the numbers are those of eval mode.
            self.prior.train()
            try:
                with poutine.trace(param_only=True) as capture:
                    loss = self._elbo.loss_and_grads(self._model, self._guide, z, lengths, scale, masks)
            finally:
                self.prior.eval()
            sites = sorted(capture.trace.nodes.items())  # the same order on every rank
            params = [site["value"].unconstrained() for _, site in sites]
            grads = [q.grad if q.grad is not None else torch.zeros_like(q) for q in params]
            flat = self.reducer.sum(torch.cat([g.reshape(-1) for g in grads]))
            for q, g in zip(params, flat.split([q.numel() for q in params])):
                q.grad = g.view_as(q).clone()
            self.optim(params)
            pyro.infer.util.zero_grads(set(params))
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
