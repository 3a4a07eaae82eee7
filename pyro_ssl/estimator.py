"""The user-facing estimator: ``SSL(K=...).fit(corpus)`` and ``pyro_ssl.fit(corpus, K=50)``.

Wraps the three layers: the Pyro model (:mod:`pyro_ssl.model`), the sampler
(:mod:`pyro_ssl.smc`) and learning (:mod:`pyro_ssl.infer`), with the estimator verbs users
know from hmmlearn and gensim: ``fit``, ``score``, ``predict``, ``sample``, ``show_topics``,
``save``/``load``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pyro
import torch

from . import evaluation
from .baselines.base import LanguageModel
from .infer.em import EMConfig, StochasticEM
from .model import TopicalSSL, length_mask
from .smc.csmc import csmc_sweep, particle_filter

__all__ = ["SSL", "fit", "as_tokens"]


def as_tokens(data, vocab_size: int | None = None):
    """Coerce documents to padded tensors.

    Accepts a :class:`~pyro_ssl.data.Corpus`, a sequence of token-id sequences, or a
    ``(tokens (D, T), lengths (D,))`` pair.

    Returns:
        ``(tokens (D, T) long, lengths (D,) long, V, vocab or None)``.
    """
    vocab = getattr(data, "vocab", None)
    if hasattr(data, "padded"):
        tokens, lengths = data.padded()
        V = int(getattr(data, "V", vocab_size or 0)) or int(tokens.max()) + 1
        return tokens.long(), lengths.long(), max(V, vocab_size or 0), vocab
    if isinstance(data, tuple) and len(data) == 2 and torch.is_tensor(data[0]):
        tokens, lengths = data[0].long(), torch.as_tensor(data[1]).long()
    else:
        if not isinstance(data, Sequence) or len(data) == 0:
            raise ValueError("expected a Corpus, a non-empty sequence of token-id sequences, or (tokens, lengths)")
        docs = [torch.as_tensor(d, dtype=torch.long).reshape(-1) for d in data]
        lengths = torch.tensor([d.numel() for d in docs], dtype=torch.long)
        tokens = torch.nn.utils.rnn.pad_sequence(docs, batch_first=True) if len(docs) else torch.empty(0, 0)
    if tokens.ndim != 2 or lengths.shape != tokens.shape[:1]:
        raise ValueError(f"tokens must be (D, T) and lengths (D,), got {tuple(tokens.shape)} and {tuple(lengths.shape)}")
    if (lengths < 1).any():
        bad = int((lengths < 1).nonzero()[0])
        raise ValueError(f"document {bad} is empty; drop empty documents before fitting")
    mask = length_mask(lengths, tokens.shape[1])
    if tokens[mask].numel() and int(tokens[mask].min()) < 0:
        raise ValueError("token ids must be non-negative")
    V = int(tokens[mask].max()) + 1 if tokens.numel() else 0
    if vocab_size is not None:
        if V > vocab_size:
            raise ValueError(f"token id {V - 1} out of range for vocab_size={vocab_size}")
        V = vocab_size
    return tokens, lengths, V, vocab


PRESETS = {
    # The seed's configuration (issue 8's measurements): uniform start, plain CSMC with 10
    # particles, every document swept under phi from all documents, then one M-step.
    "seed": dict(num_particles=10, ancestor_lag=0, init="uniform", emission="global",
                 batch_size=10**9, mstep_iters=1),
}


class SSL(LanguageModel):
    """Topical State Space LSTM fitted by particle Gibbs within stochastic EM.

    The defaults were chosen by measurement on the seed's IMDB setup (``docs/learning.md``):
    ancestor sampling with look-ahead 5, documents swept under topics fitted to the other
    documents, a start from a particle-filter pass under randomly perturbed topics, and
    minibatches of 50 documents with 5 M-step iterations each. ``preset="seed"`` restores
    the seed's configuration.

    Args:
        K: number of topics.
        num_particles: E-step particles per document.
        ancestor_lag: ancestor-sampling look-ahead for the reference path (0 = plain CSMC as in
            the seed; ``"full"`` = exact PGAS).
        hidden_size, embed_dim, dropout: LSTM prior sizes.
        beta: Dirichlet smoothing of ``phi``.
        batch_size, lr, mstep_iters, clip_norm: stochastic-EM settings (see :class:`EMConfig`).
        init, init_steps, phi_update, emission, resampling, sweeps_per_epoch: see
            :class:`EMConfig`.
        seed: makes fits reproducible (same seed, same result on the same device).
        device: ``None`` for CPU, or any torch device (``"cuda"`` when you have one).
        dtype: floating type of the model (float32 default; tests use float64).
        preset: ``"seed"`` overrides the sampler and learning settings with the seed's.
    """

    def __init__(
        self,
        K: int = 50,
        *,
        num_particles: int = 10,
        ancestor_lag: int | str = 5,
        hidden_size: int = 64,
        embed_dim: int | None = None,
        dropout: float = 0.2,
        beta: float = 0.1,
        batch_size: int = 50,
        lr: float = 1e-2,
        mstep_iters: int = 5,
        clip_norm: float = 5.0,
        init: str = "smc",
        init_steps: int = 0,
        phi_update: str = "smoothed",
        emission: str = "leave_out",
        resampling: str = "multinomial",
        sweeps_per_epoch: int = 1,
        seed: int = 0,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        preset: str | None = None,
        epochs: int = 30,
        eval_particles: int = 1000,
    ):
        if preset is not None:
            if preset not in PRESETS:
                raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
            p = PRESETS[preset]
            num_particles, ancestor_lag, init, emission = p["num_particles"], p["ancestor_lag"], p["init"], p["emission"]
            batch_size, mstep_iters = p["batch_size"], p["mstep_iters"]
        self.K = int(K)
        self.hidden_size, self.embed_dim, self.dropout, self.beta = hidden_size, embed_dim, dropout, beta
        self.config = EMConfig(
            num_particles=num_particles,
            ancestor_lag=ancestor_lag,
            resampling=resampling,
            batch_size=batch_size,
            mstep_iters=mstep_iters,
            lr=lr,
            clip_norm=clip_norm,
            beta=beta,
            phi_update=phi_update,
            emission=emission,
            init=init,
            init_steps=init_steps,
            sweeps_per_epoch=sweeps_per_epoch,
        )
        self.config.validate()
        self.seed = int(seed)
        self.epochs, self.eval_particles = int(epochs), int(eval_particles)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = dtype
        self.model: TopicalSSL | None = None
        self.log_phi: torch.Tensor | None = None
        self.vocab = None
        self.V: int | None = None
        self.history: list[dict] = []
        self._em: StochasticEM | None = None

    # ------------------------------------------------------------------ construction
    def _build(self, V: int) -> None:
        pyro.set_rng_seed(self.seed)
        self.V = int(V)
        self.model = TopicalSSL(self.K, self.V, self.hidden_size, self.embed_dim, self.dropout, self.beta)
        self.model.to(device=self.device, dtype=self.dtype)
        self.model.prior.eval()

    @property
    def prior(self):
        self._check_fitted()
        return self.model.prior

    @property
    def phi(self) -> torch.Tensor:
        """Topic-word probabilities ``(K, V)``."""
        self._check_fitted()
        return self.log_phi.exp()

    def _check_fitted(self):
        if self.model is None or self.log_phi is None:
            raise RuntimeError("this SSL is not fitted yet; call fit() or load() first")

    # ------------------------------------------------------------------ learning
    def fit(
        self,
        data,
        epochs: int | None = None,
        *,
        vocab_size: int | None = None,
        eval_data=None,
        eval_every: int = 1,
        eval_particles: int = 100,
        callback=None,
        progress: bool = True,
        checkpoint_dir=None,
        resume: bool = False,
    ) -> "SSL":
        """Run stochastic EM for ``epochs`` epochs (continuing if already fitted).

        Args:
            data: training documents (see :func:`as_tokens`).
            epochs: passes over the data.
            vocab_size: ``V`` when ids do not reach it (inferred from a corpus otherwise).
            eval_data: optional ``(tokens, lengths, T1)`` completion set (e.g. from
                :func:`pyro_ssl.data.completion_split`) scored every ``eval_every`` epochs
                with ``eval_particles`` filter particles; recorded as ``completion_ppl``.
            callback: called as ``callback(ssl, entry)`` after every epoch; return ``True``
                to stop early.
            progress: show a progress bar.
            checkpoint_dir: if given, ``checkpoint_dir/checkpoint.pt`` is written atomically
                after every epoch with everything needed to continue exactly (weights,
                ``log_phi``, paths, counts, generator and RNG states, Adam state, history).
            resume: continue from the checkpoint in ``checkpoint_dir`` (start fresh if there is
                none yet). Needs the same data and hyperparameters (checked). ``epochs`` means
                what it meant in the interrupted call: the resumed run ends where the
                uninterrupted one would have, with identical results.
        Returns:
            ``self``; ``history`` holds one dict per epoch.
        """
        from . import io as _io

        tokens, lengths, V, vocab = as_tokens(data, vocab_size or self.V)
        ckpt = None
        if resume:
            if checkpoint_dir is None:
                raise ValueError("resume=True needs checkpoint_dir")
            ckpt = _io.load_checkpoint(checkpoint_dir)
            if ckpt is None:
                import warnings

                warnings.warn(f"no checkpoint in {checkpoint_dir}; starting a fresh fit", stacklevel=2)
        if self.model is None:
            self._build(V)
            self.vocab = vocab
        elif V > self.V:
            raise ValueError(f"data has vocabulary size {V} but the model was built with V={self.V}")
        if self._em is None or ckpt is not None:
            self._em = StochasticEM(self.model, tokens, lengths, self.config, seed=self.seed)
        em = self._em
        fingerprint = _io.data_fingerprint(tokens, lengths, self.V) if checkpoint_dir is not None else None
        start_epoch = em.epoch
        if ckpt is not None:
            start_epoch = _io.restore_checkpoint(self, ckpt, fingerprint)
        from tqdm.auto import tqdm

        epochs = self.epochs if epochs is None else epochs
        remaining = max(start_epoch + int(epochs) - em.epoch, 0)
        bar = tqdm(range(remaining), desc="pyro-ssl fit", disable=not progress, unit="epoch")
        for _ in bar:
            entry = em.run_epoch()
            self.log_phi = em.log_phi
            if eval_data is not None and (em.epoch % eval_every == 0):
                t0 = time.perf_counter()
                est = self.completion_perplexity(*eval_data, num_particles=eval_particles, seeds=(em.epoch,))
                entry["completion_ppl"] = est.mean
                entry["eval_seconds"] = time.perf_counter() - t0
            self.history.append(entry)
            if checkpoint_dir is not None:
                _io.save_checkpoint(self, checkpoint_dir, fingerprint=fingerprint, start_epoch=start_epoch)
            postfix = {"logp/tok": f"{entry['log_joint_per_token']:.3f}", "s": f"{entry['seconds']:.2f}"}
            if "completion_ppl" in entry:
                postfix["ppl"] = f"{entry['completion_ppl']:.1f}"
            bar.set_postfix(postfix)
            if callback is not None and callback(self, entry):
                break
        return self

    # ------------------------------------------------------------------ inference
    def score(self, data, num_particles: int = 1000, seeds=(0, 1, 2)) -> evaluation.Estimate:
        """Per-token held-out log likelihood ``log Zhat / tokens`` (mean and spread over seeds)."""
        self._check_fitted()
        tokens, lengths, _, _ = as_tokens(data, self.V)
        return evaluation.heldout_log_likelihood(self.prior, self.log_phi, tokens, lengths, num_particles, seeds)

    def token_log_probs(self, tokens: torch.Tensor, lengths: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """``(B, T)`` particle-filter estimates of ``log p(x_t | x_<t)`` (0 at padding), with
        ``eval_particles`` particles: the :class:`~pyro_ssl.baselines.LanguageModel` interface.

        Their sum over a document is ``log Zhat``, whose exponential is unbiased for ``p(x)``.
        """
        self._check_fitted()
        return evaluation.filter_log_increments(self.prior, self.log_phi, tokens, lengths, self.eval_particles, seed=seed)

    def completion_perplexity(self, tokens, lengths, T1: int, num_particles: int = 1000, seeds=(0, 1, 2)):
        """Document-completion perplexity of the continuation after ``T1`` tokens."""
        self._check_fitted()
        return evaluation.completion_perplexity(self.prior, self.log_phi, tokens, lengths, T1, num_particles, seeds)

    @torch.no_grad()
    def predict(self, data, num_sweeps: int = 20, num_particles: int | None = None, seed: int = 0) -> list[list[int]]:
        """Posterior topic paths: a particle-filter draw refined by ``num_sweeps`` CSMC sweeps.

        Returns one list of topic ids per document (its own length).
        """
        self._check_fitted()
        tokens, lengths, _, _ = as_tokens(data, self.V)
        P = num_particles or max(self.config.num_particles, 2)
        gen = torch.Generator(device=self.device).manual_seed(seed)
        x, n = tokens.to(self.device), lengths.to(self.device)
        z = particle_filter(self.prior, self.log_phi, x, n, P, resampling="multinomial", generator=gen).path
        for _ in range(num_sweeps):
            z = csmc_sweep(self.prior, self.log_phi, x, n, P, z, ancestor_lag=self.config.ancestor_lag,
                           generator=gen).path
        return [z[i, : int(n[i])].tolist() for i in range(z.shape[0])]

    @torch.no_grad()
    def sample(self, num_docs: int, length: int, temperature: float = 1.0, seed: int = 0):
        """Generate ``(topics (N, T), words (N, T))`` from the fitted model.

        ``temperature`` divides the logits of both the topic prior and the topic-word
        distributions (1 = the model; < 1 sharper; > 1 flatter).
        """
        self._check_fitted()
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        from .smc.categorical import sample_categorical

        gen = torch.Generator(device=self.device).manual_seed(seed)
        prior = self.prior
        table = prior.input_table()
        state, z_prev = prior.initial_state((num_docs,))
        z = torch.empty(num_docs, length, dtype=torch.long, device=self.device)
        w = torch.empty_like(z)
        for t in range(length):
            log_pi, state = prior.step(z_prev, state, table)
            z_prev = sample_categorical(log_pi / temperature, gen)
            z[:, t] = z_prev
            w[:, t] = sample_categorical(self.log_phi[z_prev] / temperature, gen)
        return z, w

    # ------------------------------------------------------------------ interpretation
    def top_words(self, num_words: int = 10) -> list[list[str]]:
        """The ``num_words`` most probable words of every topic (ids as strings without a vocab)."""
        self._check_fitted()
        top = self.log_phi.topk(min(num_words, self.V), dim=-1).indices.tolist()
        itos = getattr(self.vocab, "itos", None)
        return [[itos[i] if itos else str(i) for i in row] for row in top]

    def show_topics(self, num_topics: int = -1, num_words: int = 10) -> list[tuple[int, str]]:
        """gensim-style ``[(k, "0.031*"word" + ...")]``, topics ordered by usage."""
        self._check_fitted()
        if self._em is not None:
            usage = self._em.counts.sum(-1)
        else:
            # A loaded model has no training paths: rank by usage under its own prior instead.
            z, _ = self.sample(256, 64, seed=0)
            usage = torch.bincount(z.reshape(-1), minlength=self.K).to(torch.float64)
        order = usage.argsort(descending=True).tolist()
        if num_topics > 0:
            order = order[:num_topics]
        phi = self.phi
        itos = getattr(self.vocab, "itos", None)
        out = []
        for k in order:
            p, idx = phi[k].topk(min(num_words, self.V))
            words = [f'{float(pi):.3f}*"{itos[i] if itos else i}"' for pi, i in zip(p, idx.tolist())]
            out.append((k, " + ".join(words)))
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> Path:
        """Save to a directory (JSON config, vocabulary, safetensors weights); see :mod:`pyro_ssl.io`."""
        from .io import save_model

        return save_model(self, path)

    @classmethod
    def load(cls, path, device=None) -> "SSL":
        from .io import load_model

        return load_model(path, device=device)

    def get_params(self) -> dict:
        cfg = self.config
        return {
            "K": self.K,
            "num_particles": cfg.num_particles,
            "ancestor_lag": cfg.ancestor_lag,
            "hidden_size": self.hidden_size,
            "embed_dim": self.embed_dim,
            "dropout": self.dropout,
            "beta": self.beta,
            "batch_size": cfg.batch_size,
            "lr": cfg.lr,
            "mstep_iters": cfg.mstep_iters,
            "clip_norm": cfg.clip_norm,
            "init": cfg.init,
            "init_steps": cfg.init_steps,
            "phi_update": cfg.phi_update,
            "emission": cfg.emission,
            "resampling": cfg.resampling,
            "sweeps_per_epoch": cfg.sweeps_per_epoch,
            "seed": self.seed,
        }

    def __repr__(self) -> str:
        state = f"fitted {len(self.history)} epochs" if self.log_phi is not None else "unfitted"
        return f"SSL(K={self.K}, V={self.V}, P={self.config.num_particles}, {state})"


def fit(data, K: int = 50, epochs: int = 30, method: str = "pg", **kwargs) -> SSL:
    """Fit a Topical SSL: ``pyro_ssl.fit(corpus, K=50)``.

    Keyword arguments go to :class:`SSL` (model and sampler settings) or to :meth:`SSL.fit`
    (``vocab_size``, ``eval_data``, ``eval_every``, ``eval_particles``, ``callback``,
    ``progress``). ``method="svi"`` learns the same model by SVI with an amortised guide
    instead of particle Gibbs (:func:`pyro_ssl.infer.svi.fit_svi`, ``docs/svi.md``).
    """
    if method == "svi":
        from .infer.svi import fit_svi

        return fit_svi(data, K=K, epochs=epochs, **kwargs)
    if method != "pg":
        raise ValueError(f"method must be 'pg' (particle Gibbs) or 'svi', got {method!r}")
    fit_keys = {"vocab_size", "eval_data", "eval_every", "eval_particles", "callback", "progress",
                "checkpoint_dir", "resume"}
    fit_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in fit_keys}
    return SSL(K=K, **kwargs).fit(data, epochs=epochs, **fit_kwargs)
