"""Interpolated Kneser-Ney n-gram language model (Chen and Goodman 1999, section 3).

The standard small-data word-LM baseline. For the highest order ``n`` and a context ``h`` of
``n - 1`` words,

    P(w | h) = max(c(h w) - D, 0) / c(h) + D * N1+(h .) / c(h) * P(w | h')

with ``h'`` the context without its first word, ``c`` raw counts, ``c(h) = sum_w c(h w)`` and
``N1+(h .)`` the number of distinct words seen after ``h``; when ``c(h) = 0`` the model backs
off entirely, ``P(w | h) = P(w | h')``. Lower orders use the same formula with *continuation*
counts ``N1+(. h w)`` (distinct words seen before ``h w``) in place of ``c``; the recursion ends
at the uniform distribution ``1 / V``. With ``0 < D <= 1`` every distribution sums to 1 over
the ``V`` words exactly: the discounted mass ``D * N1+(h .)`` is what the lower order gets.

Documents are padded on the left with ``n - 1`` begin-of-document symbols (id ``V``, never
predicted), so every n-gram of every order has a predecessor and the first words of a
document are predicted from a begin-of-document context. There is no end symbol: like every
model here, it scores ``p(x_t | x_<t)`` given the document's length.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence, Union

import torch

from .base import DocList, LanguageModel, length_mask, pad_docs

__all__ = ["KneserNey"]


class KneserNey(LanguageModel):
    """Interpolated Kneser-Ney ``order``-gram model with one absolute discount per order.

    Args:
        order: ``n`` (1 = a Kneser-Ney unigram interpolated with uniform, 2 = bigram, ...).
        discount: ``"auto"`` (per order, ``D = n1 / (n1 + 2 n2)`` from the counts-of-counts
            of that order's (continuation) counts, Ney et al. 1994), one float in ``(0, 1]``
            for every order, or a sequence of ``order`` floats (unigram first).

    Fitted attributes:
        discounts: ``order`` floats, unigram first.
        vocab_size: ``V``.
    """

    name = "kn"

    def __init__(self, order: int = 3, discount: Union[str, float, Sequence[float]] = "auto"):
        if int(order) < 1:
            raise ValueError("order must be >= 1")
        self.order = int(order)
        if isinstance(discount, str):
            if discount != "auto":
                raise ValueError("discount must be 'auto', a float in (0, 1] or one float per order")
        else:
            ds = [float(discount)] * self.order if isinstance(discount, (int, float)) else [float(d) for d in discount]
            if len(ds) != self.order or not all(0.0 < d <= 1.0 for d in ds):
                raise ValueError("discounts must lie in (0, 1], one per order")
        self.discount = discount
        self.vocab_size: int | None = None
        self.discounts: list[float] = []
        # per order m (1..n): context tuple of m-1 ids -> {word: count} (raw for m = n,
        # continuation counts below), and per context the total and the distinct-word count
        self._counts: list[dict[tuple, dict[int, int]]] = []
        self._totals: list[dict[tuple, int]] = []

    # ----------------------------------------------------------------- training
    def fit(self, docs: DocList, vocab_size: int, **kw) -> "KneserNey":
        tokens, lengths = pad_docs(docs)
        V = int(vocab_size)
        self._check_batch(tokens, lengths, V)
        self.vocab_size, n, bos = V, self.order, V
        seqs = [[bos] * (n - 1) + tokens[i, : int(lengths[i])].tolist() for i in range(tokens.shape[0])]
        # highest order: raw counts of every n-gram (context padded with bos)
        top: dict[tuple, int] = defaultdict(int)
        for s in seqs:
            for t in range(n - 1, len(s)):
                top[tuple(s[t - n + 1 : t + 1])] += 1
        grams = [dict() for _ in range(n + 1)]  # grams[m]: m-gram -> count used at order m
        grams[n] = dict(top)
        # order m < n: continuation count N1+(. g) = distinct left extensions among the
        # (m+1)-grams seen (bos padding gives every position a left neighbour)
        for m in range(n - 1, 0, -1):
            cont: dict[tuple, int] = defaultdict(int)
            for g in set(_ngrams_of(seqs, m + 1)):  # distinct (m+1)-gram types
                cont[g[1:]] += 1
            grams[m] = dict(cont)
        self._counts, self._totals, self._types = [], [], []
        for m in range(1, n + 1):
            by_ctx: dict[tuple, dict[int, int]] = defaultdict(dict)
            for g, c in grams[m].items():
                if g[-1] != bos:  # bos is a context symbol only, never predicted
                    by_ctx[g[:-1]][g[-1]] = c
            self._counts.append(dict(by_ctx))
            self._totals.append({h: sum(ws.values()) for h, ws in by_ctx.items()})
            self._types.append({h: len(ws) for h, ws in by_ctx.items()})
        self.discounts = self._discounts()
        self._cache: dict[tuple, float] = {}
        return self

    def _discounts(self) -> list[float]:
        if self.discount != "auto":
            d = self.discount
            return [float(d)] * self.order if isinstance(d, (int, float)) else [float(x) for x in d]
        out = []
        for counts in self._counts:
            values = [c for ws in counts.values() for c in ws.values()]
            n1, n2 = sum(v == 1 for v in values), sum(v == 2 for v in values)
            # Ney's estimate; falls back to 0.5 when the counts-of-counts are degenerate
            out.append(min(max(n1 / (n1 + 2 * n2), 1e-3), 1.0) if n1 > 0 else 0.5)
        return out

    # ----------------------------------------------------------------- probabilities
    def _prob(self, context: tuple, w: int) -> float:
        """``P(w | context)``, ``context`` the last ``order - 1`` ids (bos-padded)."""
        p = 1.0 / self.vocab_size
        for m in range(1, self.order + 1):  # from the unigram up: each order interpolates the one below
            h = context[len(context) - (m - 1):] if m > 1 else ()
            total = self._totals[m - 1].get(h, 0)
            if total == 0:
                continue  # unseen context: back off entirely
            D = self.discounts[m - 1]
            c = self._counts[m - 1][h].get(w, 0)
            p = (max(c - D, 0.0) + D * self._types[m - 1][h] * p) / total
        return p

    def next_word_probs(self, context: Sequence[int]) -> torch.Tensor:
        """``(V,)`` float64 ``P(. | context)`` for a context of earlier ids (the last
        ``order - 1`` count; shorter contexts are padded with the begin-of-document symbol)."""
        if self.vocab_size is None:
            raise RuntimeError("call fit() first")
        V, n = self.vocab_size, self.order
        ctx = tuple(([V] * (n - 1) + list(int(x) for x in context))[len(context):]) if n > 1 else ()
        p = torch.full((V,), 1.0 / V, dtype=torch.float64)
        for m in range(1, n + 1):
            h = ctx[len(ctx) - (m - 1):] if m > 1 else ()
            total = self._totals[m - 1].get(h, 0)
            if total == 0:
                continue
            D = self.discounts[m - 1]
            ws = self._counts[m - 1][h]
            num = torch.zeros(V, dtype=torch.float64)
            num[torch.tensor(list(ws), dtype=torch.long)] = torch.tensor(list(ws.values()), dtype=torch.float64) - D
            p = (num.clamp_min(0.0) + D * self._types[m - 1][h] * p) / total
        return p

    def token_log_probs(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` float64 ``log P(x_t | x_{t-n+1:t})``, ``0.0`` at padding."""
        if self.vocab_size is None:
            raise RuntimeError("call fit() first")
        self._check_batch(tokens, lengths, self.vocab_size)
        B, T = tokens.shape
        n, bos = self.order, self.vocab_size
        out = torch.zeros(B, T, dtype=torch.float64)
        rows = tokens.cpu().tolist()
        for b in range(B):
            s = [bos] * (n - 1) + rows[b][: int(lengths[b])]
            for t in range(n - 1, len(s)):
                key = tuple(s[t - n + 1 : t + 1])
                p = self._cache.get(key)
                if p is None:
                    p = self._cache[key] = self._prob(key[:-1], key[-1])
                out[b, t - n + 1] = p
        mask = length_mask(lengths.cpu(), T)
        return torch.where(mask, out.log(), torch.zeros_like(out)).to(tokens.device)

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"KneserNey(order={self.order}, discount={self.discount!r})"


def _ngrams_of(seqs: list[list[int]], m: int):
    """Every ``m``-gram occurrence (tuples) of the padded sequences, ``m <= order``."""
    for s in seqs:
        for t in range(m - 1, len(s)):
            yield tuple(s[t - m + 1 : t + 1])
