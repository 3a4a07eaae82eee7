"""Discrete hidden Markov model language model trained by Baum-Welch (EM).

The HMM is the special case of the State Space LSTM whose topic prior depends only on
``z_{t-1}`` (SPEC section 6), so its exact forward likelihood is both a baseline and a
reference value for the samplers.

Model: ``z_0 ~ pi0``, ``z_t | z_{t-1} ~ A[z_{t-1}, :]``, ``x_t | z_t ~ B[z_t, :]``.

Implementation notes:

* The forward-backward recursions are the *scaled* (normalised) form: ``alpha_hat_t``
  is the filtering distribution ``p(z_t | x_{<=t})`` and the normaliser
  ``c_t = p(x_t | x_{<t})``. This is mathematically the log-space recursion with the
  running ``logsumexp`` factored out at every step, so nothing under- or overflows, but
  each step is one ``(B, K) @ (K, K)`` matrix product instead of a ``(B, K, K)``
  ``logsumexp`` (much faster for ``K = 100``).
* Documents are processed as padded ``(B, T)`` batches with a length mask; at padding
  steps the filter is carried unchanged and ``log c_t = 0``, so padding never changes
  likelihoods or expected counts.
* The M-step is the MAP update with pseudo-counts,
  ``B[k, w] = (n_kw + beta) / (n_k + V beta)``,
  ``A[j, k] = (n_jk + alpha) / (n_j + K alpha)``,
  ``pi0[k] = (n_k^0 + alpha) / (D + K alpha)``,
  i.e. EM for the posterior under Dirichlet(``beta + 1``) / Dirichlet(``alpha + 1``)
  priors. EM is monotone for that *penalised* objective, which is what ``history``
  records; the raw training log likelihood is kept in ``loglik_history``.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..runtime import get_threads
from .base import DocList, LanguageModel, intra_op_threads, length_mask, pad_docs

__all__ = ["HMM"]


class HMM(LanguageModel):
    """Batched Baum-Welch HMM language model.

    Args:
        K: number of hidden states.
        beta: emission pseudo-count (Dirichlet smoothing of ``B``).
        alpha: transition and initial-state pseudo-count.
        n_iter: maximum number of EM iterations.
        tol: stop when the penalised objective improves by less than ``tol`` nats per
            training token between iterations.
        seed: seeds the random initialisation (numpy ``RandomState``).
        restarts: EM runs from the initialisations seeded ``seed * restarts + r`` for
            ``r < restarts`` (disjoint across ``seed``s, so training seeds stay independent
            replicates; ``seed`` itself when ``restarts == 1``); the run with the highest final
            penalised training objective is kept (EM finds a local optimum; several starts
            make the baseline less of a lottery). Its start seed is ``best_restart_seed``;
            ``restart_objectives`` holds every run's final objective.
        dtype: floating dtype of the parameters and recursions (float64 by default).
        chunk_size: documents per E-step batch (bounds memory at ``chunk * T * K``).
        init_self_transition: weight of the identity in the initial transition matrix
            (see :meth:`_init_params`).
        num_threads: torch intra-op CPU threads used during :meth:`fit` (restored
            afterwards); default the package's setting (:mod:`pyro_ssl.runtime`, one).
        verbose: print the objective every iteration.

    Fitted attributes:
        log_pi0: ``(K,)`` initial-state log probabilities.
        log_A: ``(K, K)`` transition log probabilities, rows = from, columns = to.
        log_B: ``(K, V)`` emission log probabilities.
        history: penalised objective (log likelihood + log prior, nats, whole training
            set) at the parameters entering each EM iteration; non-decreasing.
        loglik_history: raw training log likelihood at the same parameters.
        converged: whether the ``tol`` criterion stopped EM before ``n_iter``.
    """

    name = "hmm"

    def __init__(
        self,
        K: int,
        beta: float = 0.01,
        alpha: float = 1.0,
        n_iter: int = 100,
        tol: float = 1e-4,
        seed: int = 0,
        restarts: int = 1,
        dtype: torch.dtype = torch.float64,
        chunk_size: int = 2048,
        init_self_transition: float = 0.5,
        num_threads: Optional[int] = None,
        verbose: bool = False,
    ):
        if K < 1:
            raise ValueError("K must be >= 1")
        if beta < 0 or alpha < 0:
            raise ValueError("beta and alpha must be >= 0")
        self.K = int(K)
        self.beta = float(beta)
        self.alpha = float(alpha)
        self.n_iter = int(n_iter)
        self.tol = float(tol)
        self.seed = int(seed)
        if int(restarts) < 1:
            raise ValueError("restarts must be >= 1")
        self.restarts = int(restarts)
        self.best_restart_seed = self.seed
        self.restart_objectives: list[float] = []
        self.dtype = dtype
        self.chunk_size = int(chunk_size)
        if not 0.0 <= init_self_transition < 1.0:
            raise ValueError("init_self_transition must be in [0, 1)")
        self.init_self_transition = float(init_self_transition)
        self.num_threads = num_threads
        self.verbose = verbose
        self.vocab_size: Optional[int] = None
        self.log_pi0: Optional[torch.Tensor] = None
        self.log_A: Optional[torch.Tensor] = None
        self.log_B: Optional[torch.Tensor] = None
        self.history: list[float] = []
        self.loglik_history: list[float] = []
        self.converged = False

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_params(
        cls,
        log_pi0: torch.Tensor,
        log_A: torch.Tensor,
        log_B: torch.Tensor,
        **kw,
    ) -> "HMM":
        """Build a fitted HMM from log parameters ``(K,)``, ``(K, K)`` [from, to], ``(K, V)``.

        Rows are renormalised (a no-op up to rounding for normalised input). The dtype and
        device of ``log_B`` are kept. Extra keyword arguments go to the constructor.
        """
        K, V = log_B.shape
        if log_pi0.shape != (K,) or log_A.shape != (K, K):
            raise ValueError("shapes must be log_pi0 (K,), log_A (K, K), log_B (K, V)")
        kw.setdefault("dtype", log_B.dtype)
        model = cls(K, **kw)
        dev, dt = log_B.device, model.dtype
        model.log_pi0 = torch.log_softmax(log_pi0.detach().to(dev, dt), dim=-1)
        model.log_A = torch.log_softmax(log_A.detach().to(dev, dt), dim=-1)
        model.log_B = torch.log_softmax(log_B.detach().to(dev, dt), dim=-1)
        model.vocab_size = int(V)
        return model

    def _init_params(self, counts: torch.Tensor, device: torch.device, seed: int | None = None) -> None:
        """Random symmetry-breaking initialisation (seeded).

        Emissions: the smoothed unigram distribution times independent Dirichlet(1)
        noise per state, renormalised, so every state starts near the corpus frequencies
        but differently. Transitions: ``d I + (1 - d) Dirichlet(1)`` rows with
        ``d = init_self_transition``. The sticky start matters: with near-uniform
        transitions the states are first fitted as an i.i.d. mixture of unigrams, whose
        likelihood is flat in how the unigram is split, and EM then crawls along that
        plateau (slow enough that the ``tol`` test can stop it there). Initial state:
        Dirichlet(10), near uniform.
        """
        rs = np.random.RandomState(self.seed if seed is None else seed)
        K, V = self.K, counts.numel()
        unigram = (counts.cpu().numpy() + self.beta) / (counts.sum().item() + V * self.beta)
        noise = rs.gamma(1.0, size=(K, V))  # normalised Exp(1) draws = Dirichlet(1)
        B = unigram[None, :] * noise
        B /= B.sum(axis=1, keepdims=True)
        A = rs.gamma(1.0, size=(K, K))
        A /= A.sum(axis=1, keepdims=True)
        d = self.init_self_transition
        A = d * np.eye(K) + (1.0 - d) * A
        pi0 = rs.gamma(10.0, size=K)
        pi0 /= pi0.sum()
        with np.errstate(divide="ignore"):  # beta == 0: unseen words get log 0 = -inf
            self.log_B = torch.as_tensor(np.log(B), dtype=self.dtype, device=device)
        self.log_A = torch.as_tensor(np.log(A), dtype=self.dtype, device=device)
        self.log_pi0 = torch.as_tensor(np.log(pi0), dtype=self.dtype, device=device)

    # ----------------------------------------------------------------- recursions
    def _params_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``pi0 (K,)``, ``A (K, K)``, ``B^T (V, K)`` in probability space on ``device``."""
        if self.log_B is None:
            raise RuntimeError("call fit() or from_params() first")
        pi0 = self.log_pi0.to(device).exp()
        A = self.log_A.to(device).exp()
        Bt = self.log_B.to(device).exp().t().contiguous()
        return pi0, A, Bt

    @staticmethod
    def _forward(
        e: torch.Tensor, mask: torch.Tensor, pi0: torch.Tensor, A: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Scaled forward recursion.

        Args:
            e: ``(B, T, K)`` emission probabilities ``B[k, x_t]``.
            mask: ``(B, T)`` bool, real tokens.
            pi0: ``(K,)``; A: ``(K, K)``.

        Returns:
            alpha: ``(B, T, K)`` filtering distributions ``p(z_t | x_{<=t})`` (carried
                unchanged through padding).
            log_c: ``(B, T)`` ``log p(x_t | x_{<t})``, 0 at padding.
            c_safe: ``(B, T)`` normalisers with zeros and padding replaced by 1 (used to
                divide in the backward pass).
        """
        Bsz, T, K = e.shape
        alpha = e.new_empty(Bsz, T, K)
        log_c = e.new_zeros(Bsz, T)
        c_safe = e.new_ones(Bsz, T)
        prev = pi0.expand(Bsz, K)
        for t in range(T):
            pred = prev if t == 0 else prev @ A  # p(z_t | x_{<t})
            u = pred * e[:, t]
            c = u.sum(-1)
            m = mask[:, t]
            # c == 0 only if the document is impossible under the model; keep the
            # -inf log likelihood but avoid 0/0 in the carried filter.
            cs = torch.where(m & (c > 0), c, torch.ones_like(c))
            new = torch.where(m.unsqueeze(-1), u / cs.unsqueeze(-1), prev)
            alpha[:, t] = new
            log_c[:, t] = torch.where(m, torch.log(c), torch.zeros_like(c))
            c_safe[:, t] = cs
            prev = new
        return alpha, log_c, c_safe

    @staticmethod
    def _backward(
        e: torch.Tensor, mask: torch.Tensor, A: torch.Tensor, c_safe: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled backward recursion matching :meth:`_forward`.

        Returns:
            beta: ``(B, T, K)`` with ``alpha * beta = p(z_t | x_{0:L})`` at real steps and
                ones at the last real step and beyond.
            v: ``(B, T, K)`` ``e_t * beta_t / c_t`` masked to real steps (re-used for the
                transition expected counts).
        """
        Bsz, T, K = e.shape
        beta = e.new_ones(Bsz, T, K)
        v = torch.zeros_like(e)  # v[:, 0] is never needed
        for t in range(T - 2, -1, -1):
            vt = e[:, t + 1] * beta[:, t + 1] / c_safe[:, t + 1].unsqueeze(-1)
            vt = vt * mask[:, t + 1].unsqueeze(-1)
            v[:, t + 1] = vt
            b = vt @ A.t()
            # steps whose successor is padding are the last real step: beta = 1
            beta[:, t] = torch.where(mask[:, t + 1].unsqueeze(-1), b, torch.ones_like(b))
        return beta, v

    def _emissions(self, tokens: torch.Tensor, Bt: torch.Tensor) -> torch.Tensor:
        """``(B, T, K)`` emission probabilities for each token (padding ids are harmless)."""
        return Bt[tokens]

    def _prepare(self, tokens: torch.Tensor, lengths: torch.Tensor):
        self._check_batch(tokens, lengths, self.vocab_size)
        dev = tokens.device
        lengths = lengths.to(dev)
        mask = length_mask(lengths, tokens.shape[1])
        # padding ids may be arbitrary: clamp them to a valid index for the gather
        safe_tokens = torch.where(mask, tokens, torch.zeros_like(tokens))
        pi0, A, Bt = self._params_on(dev)
        e = self._emissions(safe_tokens, Bt)
        return safe_tokens, lengths, mask, pi0, A, Bt, e

    # ----------------------------------------------------------------- training
    def _log_prior(self) -> float:
        """Log density (up to a constant) of the Dirichlet priors implied by the
        pseudo-counts; skipped when a pseudo-count is 0 (avoids 0 * -inf)."""
        lp = 0.0
        if self.beta > 0:
            lp += self.beta * float(self.log_B.sum())
        if self.alpha > 0:
            lp += self.alpha * float(self.log_A.sum() + self.log_pi0.sum())
        return lp

    def fit(self, docs: DocList, vocab_size: int, **kw) -> "HMM":
        """Baum-Welch on the training documents.

        Keyword args: ``init_params=(log_pi0, log_A, log_B)`` to start from given
        parameters instead of the random initialisation (one run, no restarts).
        """
        with intra_op_threads(self.num_threads if self.num_threads is not None else get_threads()):
            runs = 1 if kw.get("init_params") is not None else self.restarts
            best, self.restart_objectives = None, []
            for r in range(runs):
                start = self.seed * runs + r
                self._fit(docs, vocab_size, seed=start, **kw)
                self.restart_objectives.append(self.history[-1])
                if best is None or self.history[-1] > best[0]:
                    best = (self.history[-1], start, self.log_pi0, self.log_A, self.log_B,
                            self.history, self.loglik_history, self.converged)
            (_, self.best_restart_seed, self.log_pi0, self.log_A, self.log_B, self.history,
             self.loglik_history, self.converged) = best
            return self

    def _fit(self, docs: DocList, vocab_size: int, seed: int | None = None, **kw) -> "HMM":
        tokens_all, lengths_all = pad_docs(docs)
        V = int(vocab_size)
        self.vocab_size = V
        device = tokens_all.device
        self._check_batch(tokens_all, lengths_all, V)
        mask_all = length_mask(lengths_all, tokens_all.shape[1])
        counts = torch.bincount(tokens_all[mask_all], minlength=V).to(self.dtype)
        n_tokens = int(lengths_all.sum())
        init = kw.get("init_params")
        if init is not None:
            self.log_pi0, self.log_A, self.log_B = (
                torch.log_softmax(p.detach().to(device, self.dtype), dim=-1) for p in init
            )
        else:
            self._init_params(counts, device, seed)
        # sort by length so each chunk is padded only to its own longest document
        order = torch.argsort(lengths_all, descending=True)
        chunks = []
        for s in range(0, order.numel(), self.chunk_size):
            idx = order[s : s + self.chunk_size]
            L = lengths_all[idx]
            Tc = int(L.max()) if idx.numel() else 0
            if Tc > 0:
                chunks.append((tokens_all[idx, :Tc], L))

        self.history, self.loglik_history, self.converged = [], [], False
        K = self.K
        for it in range(self.n_iter):
            pi0, A, Bt = self._params_on(device)
            n_pi = torch.zeros(K, dtype=self.dtype, device=device)
            n_A = torch.zeros(K, K, dtype=self.dtype, device=device)
            n_Bt = torch.zeros(V, K, dtype=self.dtype, device=device)
            loglik = 0.0
            for tok, L in chunks:
                mask = length_mask(L, tok.shape[1])
                e = Bt[tok]
                alpha, log_c, c_safe = self._forward(e, mask, pi0, A)
                beta, v = self._backward(e, mask, A, c_safe)
                loglik += float(log_c.sum())
                gamma = alpha * beta
                # renormalise: exact in theory, removes accumulated rounding
                gamma = gamma / gamma.sum(-1, keepdim=True).clamp_min(torch.finfo(self.dtype).tiny)
                gamma = gamma * mask.unsqueeze(-1)
                n_pi += gamma[:, 0].sum(0)
                # expected transitions: sum_{b,t} alpha_{t-1}(i) A(i,j) e_t(j) beta_t(j) / c_t;
                # v already carries e_t * beta_t / c_t and is zero at padding.
                n_A += A * torch.einsum("bti,btj->ij", alpha[:, :-1], v[:, 1:])
                n_Bt.index_add_(0, tok[mask], gamma[mask])
            obj = loglik + self._log_prior()
            self.history.append(obj)
            self.loglik_history.append(loglik)
            if self.verbose:
                print(f"[hmm K={K}] iter {it}: loglik/token {loglik / max(n_tokens, 1):.5f} objective {obj:.3f}")
            if it > 0 and (obj - self.history[-2]) < self.tol * max(n_tokens, 1):
                self.converged = True
                break
            self._m_step(n_pi, n_A, n_Bt.t())
        return self

    def _m_step(self, n_pi: torch.Tensor, n_A: torch.Tensor, n_B: torch.Tensor) -> None:
        """MAP update from expected counts (see module docstring)."""

        def normalise(counts: torch.Tensor, pseudo: float) -> torch.Tensor:
            num = counts + pseudo
            den = num.sum(-1, keepdim=True)
            # a state never visited with zero pseudo-count: fall back to uniform
            uniform = torch.full_like(num, 1.0 / num.shape[-1])
            p = torch.where(den > 0, num / den.clamp_min(torch.finfo(num.dtype).tiny), uniform)
            return torch.log(p)

        self.log_pi0 = normalise(n_pi, self.alpha)
        self.log_A = normalise(n_A, self.alpha)
        self.log_B = normalise(n_B, self.beta)

    # ----------------------------------------------------------------- scoring
    def token_log_probs(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B, T)``: ``log p(x_t | x_{<t})`` = log normaliser of the forward step,
        ``0.0`` at padding (dtype of the model)."""
        _, _, mask, pi0, A, _, e = self._prepare(tokens, lengths)
        _, log_c, _ = self._forward(e, mask, pi0, A)
        return log_c

    def filtering(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B, T, K)`` filtering distributions ``p(z_t | x_{<=t})``, 0 at padding."""
        _, _, mask, pi0, A, _, e = self._prepare(tokens, lengths)
        alpha, _, _ = self._forward(e, mask, pi0, A)
        return alpha * mask.unsqueeze(-1)

    def posterior_marginals(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B, T, K)`` smoothing marginals ``p(z_t = k | x_{0:L})``; rows of zeros at padding."""
        _, _, mask, pi0, A, _, e = self._prepare(tokens, lengths)
        alpha, _, c_safe = self._forward(e, mask, pi0, A)
        beta, _ = self._backward(e, mask, A, c_safe)
        gamma = alpha * beta
        gamma = gamma / gamma.sum(-1, keepdim=True).clamp_min(torch.finfo(gamma.dtype).tiny)
        return gamma * mask.unsqueeze(-1)

    def sample_paths(
        self,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """Exact posterior draws ``z ~ p(z | x)`` by forward-filtering backward-sampling.

        Returns a ``(B, T)`` long tensor of states; padding positions are 0. ``generator``
        (on the device of ``tokens``) makes the draws reproducible.
        """
        _, lengths, mask, pi0, A, _, e = self._prepare(tokens, lengths)
        alpha, _, _ = self._forward(e, mask, pi0, A)
        Bsz, T, K = alpha.shape
        z = torch.zeros(Bsz, T, dtype=torch.long, device=tokens.device)
        last = lengths - 1
        At = A.t().contiguous()
        nxt = torch.zeros(Bsz, dtype=torch.long, device=tokens.device)
        for t in range(T - 1, -1, -1):
            w = alpha[:, t]
            # p(z_t | z_{t+1}, x_{<=t}) ∝ alpha_t(i) A(i, z_{t+1}); at the last real step
            # the filter itself is the posterior.
            w_back = w * At[nxt]
            inside = (t < last).unsqueeze(-1)
            probs = torch.where(inside, w_back, w)
            active = mask[:, t]
            probs = torch.where(active.unsqueeze(-1), probs, torch.ones_like(probs))
            s = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            s = torch.where(active, s, torch.zeros_like(s))
            z[:, t] = s
            nxt = torch.where(active, s, nxt)
        return z

    def log_joint(self, tokens: torch.Tensor, lengths: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``(B,)`` ``log p(x, z)`` for given state paths ``z (B, T)`` (padding ignored)."""
        safe, lengths, mask, _, _, _, _ = self._prepare(tokens, lengths)
        dev = tokens.device
        lpi, lA, lB = self.log_pi0.to(dev), self.log_A.to(dev), self.log_B.to(dev)
        z = torch.where(mask, z, torch.zeros_like(z))
        zero = torch.zeros((), dtype=lB.dtype, device=dev)
        lp = torch.where(mask, lB[z, safe], zero).sum(1)
        has = lengths > 0
        lp = lp + torch.where(has, lpi[z[:, 0]], zero)
        if z.shape[1] > 1:
            lp = lp + torch.where(mask[:, 1:], lA[z[:, :-1], z[:, 1:]], zero).sum(1)
        return lp

    @property
    def num_params(self) -> int:
        V = self.vocab_size or 0
        return (self.K - 1) + self.K * (self.K - 1) + self.K * (V - 1)

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"HMM(K={self.K}, beta={self.beta}, alpha={self.alpha}, restarts={self.restarts})"

