"""Add-beta smoothed unigram language model."""

from __future__ import annotations

import torch

from .base import DocList, LanguageModel, length_mask, pad_docs

__all__ = ["UnigramLM"]


class UnigramLM(LanguageModel):
    """``p(w) = (n_w + beta) / (N + V * beta)`` from the training tokens.

    Every token is scored with the same distribution, independent of its context.

    Attributes (after :meth:`fit`):
        counts: ``(V,)`` float64 training counts ``n_w``.
        log_probs: ``(V,)`` float64 ``log p(w)``.
    """

    name = "unigram"

    def __init__(self, beta: float = 1.0):
        if beta < 0:
            raise ValueError("beta must be >= 0")
        self.beta = float(beta)
        self.vocab_size: int | None = None
        self.counts: torch.Tensor | None = None
        self.log_probs: torch.Tensor | None = None

    def fit(self, docs: DocList, vocab_size: int, **kw) -> "UnigramLM":
        tokens, lengths = pad_docs(docs)
        mask = length_mask(lengths, tokens.shape[1])
        counts = torch.bincount(tokens[mask], minlength=vocab_size).to(torch.float64)
        if counts.numel() > vocab_size:
            raise ValueError("token ids out of range [0, vocab_size)")
        self.vocab_size = int(vocab_size)
        self.counts = counts
        denom = counts.sum() + vocab_size * self.beta
        # log(0) = -inf is the honest answer for unseen words when beta == 0.
        self.log_probs = torch.log(counts + self.beta) - torch.log(denom)
        return self

    def token_log_probs(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` float64: ``log p(x_t)`` at real tokens, ``0.0`` at padding."""
        if self.log_probs is None:
            raise RuntimeError("call fit() first")
        self._check_batch(tokens, lengths, self.vocab_size)
        mask = length_mask(lengths.to(tokens.device), tokens.shape[1])
        lp = self.log_probs.to(tokens.device)[tokens]
        # where(), not multiplication, so that -inf (beta=0, unseen word) at padding
        # cannot turn into nan.
        return torch.where(mask, lp, torch.zeros((), dtype=lp.dtype, device=lp.device))
