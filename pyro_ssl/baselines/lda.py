"""LDA (gensim) as a document-completion baseline.

Two completion scores (``scoring``):

* ``"chain"`` (the chain rule every other model uses): ``p(x_t | x_{<t}) = sum_k
  theta_k(x_{<t}) phi_k[x_t]`` for each held-out token, the mixture folded in from *all*
  earlier tokens, the already scored continuation included (one fold-in per step);
* ``"prefix"``: every held-out token gets the mixture folded in from the observed prefix
  ``x_{<T1}`` only, ``p(x_t | x_{<T1})``. This is not a chain-rule likelihood of the
  continuation (later tokens do not see earlier held-out ones), so it is not comparable with
  the other models' scores.

The mixture is the variational posterior mean of gensim's ``inference``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch

from .base import DocList, LanguageModel, length_mask, pad_docs

__all__ = ["LDABaseline"]


class LDABaseline(LanguageModel):
    """Wrapper around :class:`gensim.models.LdaModel` trained on bag-of-words counts.

    Args:
        K: number of topics.
        passes, iterations: gensim training passes over the corpus and per-document
            variational iterations (also used for the prefix fold-in).
        alpha: ``"auto"`` (learned asymmetric prior), ``"symmetric"``, or anything gensim
            accepts. eta: topic-word prior (gensim default ``None`` = ``1/K``).
        seed: gensim ``random_state``; fold-in is also re-seeded with it on every scoring
            call, so scores are deterministic.
        vocabulary: optional list of ``V`` word strings (for ``id2word`` and
            :meth:`top_words`); defaults to ``str(i)``.
        chunksize: gensim chunk size. gensim_kwargs: extra keyword arguments for
            ``LdaModel``.
        scoring: ``"prefix"`` or ``"chain"``, the rule of :meth:`completion_log_likelihood`
            (module docstring).

    Fitted attributes:
        model: the ``gensim.models.LdaModel``.
        topics: ``(K, V)`` float64 tensor, rows are normalised ``phi_k`` (no zeros).
        alpha_vec: ``(K,)`` float64 Dirichlet prior on ``theta``.
    """

    name = "lda"

    def __init__(
        self,
        K: int,
        passes: int = 10,
        iterations: int = 100,
        alpha: Union[str, float, Sequence[float]] = "auto",
        eta=None,
        seed: int = 0,
        vocabulary: Optional[Sequence[str]] = None,
        chunksize: int = 2000,
        gensim_kwargs: Optional[dict] = None,
        scoring: str = "prefix",
    ):
        if scoring not in ("prefix", "chain"):
            raise ValueError("scoring must be 'prefix' or 'chain'")
        self.scoring = scoring
        self.K = int(K)
        self.passes = int(passes)
        self.iterations = int(iterations)
        self.alpha = alpha
        self.eta = eta
        self.seed = int(seed)
        self.vocabulary = list(vocabulary) if vocabulary is not None else None
        self.chunksize = int(chunksize)
        self.gensim_kwargs = dict(gensim_kwargs or {})
        self.model = None
        self.vocab_size: Optional[int] = None
        self.topics: Optional[torch.Tensor] = None
        self.alpha_vec: Optional[torch.Tensor] = None

    # ----------------------------------------------------------------- training
    @staticmethod
    def _bow(doc: torch.Tensor) -> list[tuple[int, int]]:
        """gensim bag-of-words ``[(id, count), ...]`` of a 1-D id tensor."""
        if doc.numel() == 0:
            return []
        ids, cnt = torch.unique(doc.cpu(), return_counts=True)
        return list(zip(ids.tolist(), cnt.tolist()))

    def fit(self, docs: DocList, vocab_size: int, **kw) -> "LDABaseline":
        from gensim.models import LdaModel

        V = int(vocab_size)
        if self.vocabulary is not None and len(self.vocabulary) != V:
            raise ValueError("vocabulary must have vocab_size entries")
        self.vocab_size = V
        tokens, lengths = pad_docs(docs)
        self._check_batch(tokens, lengths, V)
        corpus = [self._bow(tokens[i, : int(lengths[i])]) for i in range(tokens.shape[0])]
        # every id must be in id2word so that gensim's num_terms is exactly V
        id2word = {i: (self.vocabulary[i] if self.vocabulary else str(i)) for i in range(V)}
        self.model = LdaModel(
            corpus=corpus, num_topics=self.K, id2word=id2word, passes=self.passes,
            iterations=self.iterations, alpha=self.alpha, eta=self.eta,
            random_state=self.seed, chunksize=self.chunksize, eval_every=None,
            dtype=np.float64, **self.gensim_kwargs,
        )
        phi = torch.as_tensor(self.model.get_topics(), dtype=torch.float64)
        # guard zeros so that log p(w) is finite for every word
        phi = phi.clamp_min(1e-300)
        self.topics = phi / phi.sum(-1, keepdim=True)
        self.alpha_vec = torch.as_tensor(np.asarray(self.model.alpha, dtype=np.float64))
        return self

    # ----------------------------------------------------------------- inference
    def infer_theta(self, prefixes: Sequence[torch.Tensor]) -> torch.Tensor:
        """``(B, K)`` float64 topic mixtures folded in from each token sequence.

        The mixture is the posterior mean ``gamma / sum(gamma)`` of gensim's variational
        inference. An empty sequence gets the prior mean ``alpha / sum(alpha)``.
        """
        if self.model is None:
            raise RuntimeError("call fit() first")
        bows = [self._bow(p) for p in prefixes]
        theta = torch.empty(len(bows), self.K, dtype=torch.float64)
        prior = self.alpha_vec / self.alpha_vec.sum()
        nonempty = [i for i, b in enumerate(bows) if b]
        for i, b in enumerate(bows):
            if not b:
                theta[i] = prior
        if nonempty:
            # inference() draws its starting point from model.random_state: swap in a
            # freshly seeded one so scores do not depend on call history.
            saved = self.model.random_state
            self.model.random_state = np.random.RandomState(self.seed)
            try:
                gamma, _ = self.model.inference([bows[i] for i in nonempty])
            finally:
                self.model.random_state = saved
            g = torch.as_tensor(np.asarray(gamma, dtype=np.float64))
            theta[nonempty] = g / g.sum(-1, keepdim=True)
        return theta

    def predictive(self, theta: torch.Tensor) -> torch.Tensor:
        """``(B, V)`` word distributions ``sum_k theta_k phi_k`` for mixtures ``theta (B, K)``."""
        return theta.to(self.topics.dtype) @ self.topics.to(theta.device)

    # ----------------------------------------------------------------- scoring
    def token_log_probs(
        self, tokens: torch.Tensor, lengths: torch.Tensor, T1: Optional[int] = None
    ) -> torch.Tensor:
        """``(B, T)`` float64 log predictive probabilities, 0 at padding.

        The mixture used at step ``t`` is folded in from ``x_{<min(t, T1)}``: with
        ``T1=None`` this is the *running* mixture (one fold-in per time step, exact
        prequential scoring, slow); with ``T1`` given, steps ``t >= T1`` use the *prefix*
        mixture from ``x_{<T1}`` (what :meth:`completion_log_likelihood` scores) and
        steps ``t < T1`` the running mixture.
        """
        self._check_batch(tokens, lengths, self.vocab_size)
        B, T = tokens.shape
        lengths = lengths.to(tokens.device)
        mask = length_mask(lengths, T)
        tok_cpu = tokens.cpu()
        out = torch.zeros(B, T, dtype=torch.float64)
        last = T if T1 is None else min(T1, T)
        self._running_scores(tok_cpu, lengths.cpu(), 0, last, out)
        if T1 is not None and T1 < T:
            out[:, T1:] = self._prefix_scores(tok_cpu, lengths.cpu(), T1)
        return torch.where(mask.cpu(), out, torch.zeros_like(out)).to(tokens.device)

    def _running_scores(self, tok_cpu: torch.Tensor, lengths: torch.Tensor, start: int, stop: int,
                        out: torch.Tensor) -> None:
        """Write ``log p(x_t | theta(x_{<t}))`` into ``out (B, T)`` for ``start <= t < stop`` at
        real tokens: one batched fold-in per step (the chain rule)."""
        for t in range(start, stop):
            live = [b for b in range(tok_cpu.shape[0]) if t < int(lengths[b])]
            if not live:
                continue
            theta = self.infer_theta([tok_cpu[b, :t] for b in live])
            p = self.predictive(theta)
            w = tok_cpu[live, t]
            out[live, t] = torch.log(p.gather(1, w.unsqueeze(1)).squeeze(1))

    def _prefix_scores(self, tok_cpu: torch.Tensor, lengths: torch.Tensor, T1: int) -> torch.Tensor:
        """``(B, T - T1)`` log p of tokens ``t >= T1`` under the prefix mixture (padding
        entries are garbage; callers mask them)."""
        B, T = tok_cpu.shape
        prefixes = [tok_cpu[b, : min(T1, int(lengths[b]))] for b in range(B)]
        theta = self.infer_theta(prefixes)
        logp = torch.log(self.predictive(theta))  # (B, V)
        # padding ids may be arbitrary: gather at a valid id, callers mask the result
        held = tok_cpu[:, T1:]
        safe = torch.where(length_mask(lengths, T)[:, T1:], held, torch.zeros_like(held))
        return logp.gather(1, safe)

    def completion_log_likelihood(self, tokens: torch.Tensor, lengths: torch.Tensor, T1: int) -> torch.Tensor:
        """``(B,)`` float64 log likelihood of tokens ``T1 <= t < L``.

        ``scoring="prefix"``: ``sum_t log sum_k theta_k(x_{<T1}) phi_k[x_t]`` (one fold-in per
        document from the observed prefix only); ``scoring="chain"``: ``sum_t log sum_k
        theta_k(x_{<t}) phi_k[x_t]`` (one fold-in per step).
        """
        self._check_batch(tokens, lengths, self.vocab_size)
        B, T = tokens.shape
        if T1 >= T:
            return torch.zeros(B, dtype=torch.float64, device=tokens.device)
        tok_cpu, L = tokens.cpu(), lengths.cpu()
        if self.scoring == "chain":
            full = torch.zeros(B, T, dtype=torch.float64)
            self._running_scores(tok_cpu, L, T1, T, full)
            scores = full[:, T1:]
        else:
            scores = self._prefix_scores(tok_cpu, L, T1)
        held = length_mask(L, T)[:, T1:]
        return torch.where(held, scores, torch.zeros_like(scores)).sum(1).to(tokens.device)

    def log_likelihood(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B,)`` prequential document log likelihood ``sum_t log p(x_t | x_{<t})`` with
        the running fold-in mixture (an approximation of LDA's intractable ``log p(x)``;
        one gensim fold-in per time step, so slow for long documents)."""
        return self.token_log_probs(tokens, lengths, T1=None).sum(1)

    def top_words(self, n: int = 10) -> list[list]:
        """For each topic, its ``n`` most probable words (vocabulary strings if a
        vocabulary was given, else integer ids), most probable first."""
        idx = torch.topk(self.topics, k=min(n, self.topics.shape[1]), dim=1).indices.tolist()
        if self.vocabulary is None:
            return idx
        return [[self.vocabulary[i] for i in row] for row in idx]
