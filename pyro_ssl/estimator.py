"""The user-facing estimator: ``SSL(K=...).fit(corpus)`` and ``pyro_ssl.fit(corpus, K=50)``.

Wraps the three layers: the Pyro model (:mod:`pyro_ssl.model`), the sampler
(:mod:`pyro_ssl.smc`) and learning (:mod:`pyro_ssl.infer`), with the estimator verbs users
know from hmmlearn and gensim: ``fit``, ``score``, ``predict``, ``sample``, ``show_topics``,
``save``/``load``.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import pyro
import torch

from . import evaluation
from . import io as persistence
from .baselines.base import LanguageModel
from .baselines.hmm import HMM
from .config import SSLConfig
from .data.shard import TokenShard
from .data.vocabulary import Vocabulary
from .infer.em import StochasticEM
from .infer.svi import SVIConfig, train_svi
from .model import TopicalSSL, length_mask
from .smc.blocked import blocked_csmc_sweep
from .smc.csmc import csmc_sweep, particle_filter
from .smc.resampling import get_resampler, inverse_cdf

__all__ = ["SSL", "as_tokens"]


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


class SSL(LanguageModel):
    """Topical State Space LSTM fitted by particle Gibbs within stochastic EM.

    Construct with settings, ``fit``, then ``score``, ``completion_perplexity``, ``predict``,
    ``sample``, ``show_topics``, ``save``/``load``. Every setting is a field of
    :class:`~pyro_ssl.config.ModelConfig`, :class:`~pyro_ssl.config.SamplerConfig` or
    :class:`~pyro_ssl.config.LearningConfig`, passed by name (``SSL(K=10, num_particles=20)``);
    the defaults live there and were chosen by measurement (``docs/learning.md``).
    ``preset="seed"`` starts from the seed's configuration instead (explicit settings win).

    Args:
        K: number of topics (a :class:`~pyro_ssl.config.ModelConfig` field).
        preset: a name from :data:`~pyro_ssl.config.PRESETS`.
        device: ``None`` for CPU, or any torch device (``"cuda"`` when you have one).
        dtype: floating type of the model (float32 default; tests use float64).
        **settings: any other field of the configuration, and ``seed``.

    Attributes:
        config: the :class:`~pyro_ssl.config.SSLConfig`.
        model: the :class:`~pyro_ssl.model.TopicalSSL` once fitted or loaded.
        log_phi: ``(K, V)`` log topic-word probabilities; history: one dict per epoch.
    """

    name = "ssl"

    def __init__(self, K: int | None = None, *, preset: str | None = None, device: str | torch.device | None = None,
                 dtype: torch.dtype = torch.float32, **settings):
        if K is not None:
            settings["K"] = K
        self.config = SSLConfig.from_flat(preset, **settings)
        resampler = get_resampler(self.config.sampler.resampling)
        if not resampler.conditional:
            raise ValueError(
                f"resampling={resampler.name!r} cannot be conditioned on a reference path (particle Gibbs); "
                "use 'multinomial' (the unconditional schemes serve the evaluation filter)"
            )
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = dtype
        self.model: TopicalSSL | None = None
        self.log_phi: torch.Tensor | None = None
        self.vocab = None
        self.V: int | None = None
        self.history: list[dict] = []
        self.method = "pg"
        self._em: StochasticEM | None = None

    @property
    def K(self) -> int:
        return self.config.model.K

    @property
    def seed(self) -> int:
        return self.config.seed

    # ------------------------------------------------------------------ construction
    def _build(self, V: int) -> None:
        pyro.set_rng_seed(self.seed)
        m = self.config.model
        self.V = int(V)
        self.model = TopicalSSL(m.K, self.V, m.hidden_size, m.embed_dim, m.dropout, m.beta)
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
        method: str = "pg",
        vocab_size: int | None = None,
        eval_data=None,
        eval_every: int = 1,
        eval_particles: int = 100,
        callback=None,
        progress: bool = True,
        checkpoint_dir=None,
        resume: bool = False,
        **svi_settings,
    ) -> "SSL":
        """Run stochastic EM for ``epochs`` epochs (continuing if already fitted).

        Args:
            data: training documents (see :func:`as_tokens`).
            epochs: passes over the data (default ``config.learning.epochs``).
            method: ``"pg"`` (particle Gibbs, the default) or ``"svi"`` (the same model learned
                by SVI with an amortised guide; ``svi_settings`` are
                :class:`~pyro_ssl.infer.svi.SVIConfig` fields; ``docs/svi.md``).
            vocab_size: ``V`` when ids do not reach it (inferred from a corpus otherwise).
            eval_data: optional ``(tokens, lengths, T1)`` completion set (e.g. from
                :func:`pyro_ssl.data.completion_split`) scored every ``eval_every`` epochs
                with ``eval_particles`` filter particles; recorded as ``completion_ppl``.
            callback: called as ``callback(ssl, entry)`` after every epoch; return ``True``
                to stop early.
            progress: show a progress bar.
            checkpoint_dir: if given, ``checkpoint_dir/checkpoint.pt`` is written atomically
                after every epoch with everything needed to continue exactly (weights,
                ``log_phi``, paths, counts, Adam state, history; randomness is keyed by
                ``(seed, epoch, ...)`` so it needs no state).
            resume: continue from the checkpoint in ``checkpoint_dir`` (start fresh if there is
                none yet). Needs the same data and settings (checked). ``epochs`` means
                what it meant in the interrupted call: the resumed run ends where the
                uninterrupted one would have, with identical results.
        Returns:
            ``self``; ``history`` holds one dict per epoch.
        """
        tokens, lengths, V, vocab = as_tokens(data, vocab_size or self.V)
        if self.model is None:
            self._build(V)
            self.vocab = vocab
        elif V > self.V:
            raise ValueError(f"data has vocabulary size {V} but the model was built with V={self.V}")
        on_epoch = self._epoch_hook(eval_data, eval_every, eval_particles, callback)
        if method == "svi":
            return self._fit_svi(tokens, lengths, epochs, progress, on_epoch, svi_settings)
        if method != "pg":
            raise ValueError(f"method must be 'pg' (particle Gibbs) or 'svi', got {method!r}")
        if svi_settings:
            raise TypeError(f"unexpected arguments {sorted(svi_settings)} for method='pg'")
        if self._em is None:
            shard = TokenShard(tokens.to(self.device), lengths.to(self.device), V=self.V)
            initial = None
            if self.config.learning.init == "hmm" and not (resume and checkpoint_dir is not None):
                initial = self._hmm_paths(tokens, lengths)
            self._em = StochasticEM(self.model, shard, self.config, initial_paths=initial)
        return self._train(self._em, epochs, on_epoch=on_epoch, progress=progress,
                           checkpoint_dir=checkpoint_dir, resume=resume)

    def _hmm_paths(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Start paths ``(D, T)`` sampled from an HMM fitted by EM (``init="hmm"``, one process)."""
        docs = [tokens[i, : int(n)].cpu() for i, n in enumerate(lengths)]
        hmm = HMM(self.K, beta=self.config.model.beta, n_iter=30, seed=self.seed)
        hmm.fit(docs, self.V)
        gen = torch.Generator().manual_seed(self.seed)
        return hmm.sample_paths(tokens.cpu(), lengths.cpu(), generator=gen)

    def _epoch_hook(self, eval_data, eval_every, eval_particles, callback):
        """``hook(entry, log_phi, save=None) -> stop`` shared by both learning methods: score and
        record the epoch, then ``save()`` (a checkpoint), then ask the callback."""

        def hook(entry: dict, log_phi: torch.Tensor, save=None) -> bool:
            self.log_phi = log_phi
            if eval_data is not None and entry["epoch"] % eval_every == 0:
                t0 = time.perf_counter()
                est = self.completion_perplexity(*eval_data, num_particles=eval_particles, seeds=(entry["epoch"],))
                entry["completion_ppl"] = est.mean
                entry["eval_seconds"] = time.perf_counter() - t0
            self.history.append(entry)
            if save is not None:
                save()  # before the callback: an interrupt there loses nothing
            return bool(callback is not None and callback(self, entry))

        return hook

    def _fit_svi(self, tokens, lengths, epochs, progress, on_epoch, svi_settings) -> "SSL":
        cfg = SVIConfig(**svi_settings)
        epochs = self.config.learning.epochs if epochs is None else epochs
        self.method = "svi"
        res = train_svi(self.model, tokens.to(self.device), lengths.to(self.device), cfg, seed=self.seed,
                        epochs=epochs, progress=progress, on_epoch=on_epoch)
        self.log_phi = res.log_phi
        self.svi = res
        return self

    def _train(self, em: StochasticEM, epochs: int | None, *, on_epoch=None, progress: bool = True,
               checkpoint_dir=None, resume: bool = False) -> "SSL":
        """The epoch loop around ``em`` (one process, or this rank of a data-parallel fit)."""
        from tqdm.auto import tqdm

        main = em.reducer.is_main
        ckpt_file = Path(checkpoint_dir) / persistence.CHECKPOINT_FILE if checkpoint_dir is not None else None
        if ckpt_file is not None and ckpt_file.parent.exists() and not ckpt_file.parent.is_dir():
            raise ValueError(f"checkpoint_dir {checkpoint_dir} is a file, not a directory")
        fingerprint = em.fingerprint(self.V) if ckpt_file is not None else None
        start_epoch = em.epoch
        if resume:
            if ckpt_file is None:
                raise ValueError("resume=True needs checkpoint_dir")
            state = persistence.load_checkpoint(ckpt_file)
            if state is None:
                if main:
                    warnings.warn(f"no checkpoint in {checkpoint_dir}; starting a fresh fit", stacklevel=3)
            else:
                start_epoch = self._restore(em, state, fingerprint)
        epochs = self.config.learning.epochs if epochs is None else int(epochs)
        remaining = max(start_epoch + epochs - em.epoch, 0)
        bar = tqdm(range(remaining), desc="pyro-ssl fit", disable=not (progress and main), unit="epoch")
        on_epoch = on_epoch or self._epoch_hook(None, 1, 0, None)

        def save():
            state = self._checkpoint_state(em, fingerprint, start_epoch)  # a collective
            if main:
                persistence.save_checkpoint(ckpt_file, state)

        for _ in bar:
            entry = em.run_epoch()
            stop = on_epoch(entry, em.log_phi, save if ckpt_file is not None else None)
            self.log_phi = em.log_phi
            postfix = {"logp/tok": f"{entry['log_joint_per_token']:.3f}", "s": f"{entry['seconds']:.2f}"}
            if "completion_ppl" in entry:
                postfix["ppl"] = f"{entry['completion_ppl']:.1f}"
            bar.set_postfix(postfix)
            if stop:
                break
        if em.counts is None:
            em.initialize()
        self.log_phi = em.log_phi
        return self

    def _checkpoint_state(self, em: StochasticEM, fingerprint: str, start_epoch: int) -> dict:
        return {
            "config": self.config.to_dict(),
            "K": self.K,
            "V": self.V,
            "dtype": str(self.dtype).replace("torch.", ""),
            "data_fingerprint": fingerprint,
            "epoch": em.epoch,
            "start_epoch": int(start_epoch),
            "em": em.state_dict(),
            "history": persistence.jsonable(self.history),
            "vocab": json.dumps(self.vocab.to_dict()) if self.vocab is not None else None,
        }

    def _restore(self, em: StochasticEM, state: dict, fingerprint: str) -> int:
        """Continue from a checkpoint's state; returns the epoch the interrupted ``fit`` started at."""
        f = state.get("path", persistence.CHECKPOINT_FILE)
        if state["data_fingerprint"] != fingerprint:
            raise ValueError(
                f"{f}: the checkpoint was written for different training data (or vocabulary size); "
                "resume with the same data, or start a fresh fit without resume"
            )
        try:
            saved = SSLConfig.from_dict(state["config"]).flat()
        except (TypeError, ValueError) as e:
            raise ValueError(f"{f}: invalid configuration in the checkpoint ({e})") from e
        now = self.config.flat()
        free = {"epochs", "eval_particles"}  # how long to run and how to score may change
        diff = {k: (saved.get(k), v) for k, v in now.items() if k not in free and saved.get(k) != v}
        if state["K"] != self.K or state["V"] != self.V:
            diff["K, V"] = ((state["K"], state["V"]), (self.K, self.V))
        if state["dtype"] != str(self.dtype).replace("torch.", ""):
            diff["dtype"] = (state["dtype"], str(self.dtype))
        if diff:
            detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diff.items())
            raise ValueError(f"{f}: settings differ from the checkpointed run ({detail})")
        try:
            em.load_state_dict(state["em"])
        except (RuntimeError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{f}: checkpoint state does not fit the model ({e})") from e
        self.log_phi = em.log_phi
        self.history = list(state["history"])
        if state.get("vocab") is not None and self.vocab is None:
            self.vocab = Vocabulary.from_dict(json.loads(state["vocab"]))
        return int(state["start_epoch"])

    # ------------------------------------------------------------------ inference
    def score(self, data, num_particles: int = 1000, seeds=(0, 1, 2)) -> evaluation.Estimate:
        """Per-token held-out log likelihood ``log Zhat / tokens`` of this fitted model.

        Returns an :class:`~pyro_ssl.evaluation.Estimate`: mean and sd over the particle-filter
        ``seeds`` (the evaluator's Monte Carlo error; refit with other training seeds for the
        spread between training runs).
        """
        self._check_fitted()
        tokens, lengths, _, _ = as_tokens(data, self.V)
        return evaluation.heldout_log_likelihood(self.prior, self.log_phi, tokens, lengths, num_particles, seeds)

    def token_log_probs(self, tokens: torch.Tensor, lengths: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """``(B, T)`` particle-filter estimates of ``log p(x_t | x_<t)`` (0 at padding), with
        ``eval_particles`` particles: the :class:`~pyro_ssl.baselines.LanguageModel` interface.

        Their sum over a document is ``log Zhat``, whose exponential is unbiased for ``p(x)``.
        """
        self._check_fitted()
        return evaluation.filter_log_increments(self.prior, self.log_phi, tokens, lengths, self.config.learning.eval_particles, seed=seed)

    def completion_perplexity(self, tokens, lengths, T1: int, num_particles: int = 1000, seeds=(0, 1, 2)):
        """Document-completion perplexity of the continuation after ``T1`` tokens.

        Returns an :class:`~pyro_ssl.evaluation.Estimate`: mean and sd over the particle-filter
        ``seeds`` for this one fitted model (Monte Carlo error of the evaluator, not the spread
        over training seeds).
        """
        self._check_fitted()
        return evaluation.completion_perplexity(self.prior, self.log_phi, tokens, lengths, T1, num_particles, seeds)

    @torch.no_grad()
    def predict(self, data, num_sweeps: int = 20, num_particles: int | None = None, seed: int = 0) -> list[list[int]]:
        """Posterior topic paths: a particle-filter draw refined by ``num_sweeps`` CSMC sweeps.

        Returns one list of topic ids per document (its own length).
        """
        self._check_fitted()
        tokens, lengths, _, _ = as_tokens(data, self.V)
        P = num_particles or self.config.sampler.num_particles
        gen = torch.Generator(device=self.device).manual_seed(seed)
        x, n = tokens.to(self.device), lengths.to(self.device)
        z = particle_filter(self.prior, self.log_phi, x, n, P, resampling="multinomial", generator=gen).path
        sampler = self.config.sampler
        for _ in range(num_sweeps):
            if sampler.kernel == "blocked":
                z = blocked_csmc_sweep(self.prior, self.log_phi, x, n, P, z, block_size=sampler.block_size,
                                       stride=sampler.block_stride, generator=gen).path
            else:
                z = csmc_sweep(self.prior, self.log_phi, x, n, P, z, ancestor_lag=sampler.ancestor_lag,
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
        gen = torch.Generator(device=self.device).manual_seed(seed)
        prior = self.prior
        table = prior.input_table()
        state, z_prev = prior.initial_state((num_docs,))
        z = torch.empty(num_docs, length, dtype=torch.long, device=self.device)
        w = torch.empty_like(z)
        for t in range(length):
            log_pi, state = prior.step(z_prev, state, table)
            z_prev = inverse_cdf(log_pi / temperature, torch.rand(num_docs, 1, generator=gen, device=self.device, dtype=log_pi.dtype)).squeeze(-1)
            z[:, t] = z_prev
            w[:, t] = inverse_cdf(self.log_phi[z_prev] / temperature, torch.rand(num_docs, 1, generator=gen, device=self.device, dtype=log_pi.dtype)).squeeze(-1)
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
        self._check_fitted()
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors["log_phi"] = self.log_phi
        return persistence.save_model(
            path, config=self.config.to_dict(), K=self.K, V=self.V, dtype=self.dtype, tensors=tensors,
            vocab=self.vocab.to_dict() if self.vocab is not None else None, history=self.history,
        )

    @classmethod
    def load(cls, path, device=None) -> "SSL":
        """Load a model saved by :meth:`save` (checksums and tensors are checked; errors name the file)."""
        saved = persistence.load_model(path)
        cfg_file = saved.path / persistence.CONFIG_FILE
        try:
            config = SSLConfig.from_dict(saved.config)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{cfg_file}: invalid configuration ({e})") from e
        if config.model.K != saved.K:
            raise ValueError(f"{cfg_file}: configuration K={config.model.K} disagrees with K={saved.K}")
        ssl = cls(device=device, dtype=saved.dtype, **config.flat())
        vocab = None
        if saved.vocab is not None:
            try:
                vocab = Vocabulary.from_dict(saved.vocab)
            except ValueError as e:
                raise ValueError(f"{saved.path / persistence.VOCAB_FILE}: {e}") from e
            if len(vocab) != saved.V:
                raise ValueError(f"{saved.path / persistence.VOCAB_FILE}: {len(vocab)} words but the model has V={saved.V}")
        with torch.random.fork_rng(devices=[]):  # initial weights are overwritten: keep the caller's RNG
            ssl._build(saved.V)
        weights = saved.path / persistence.WEIGHTS_FILE
        expected = {f"model.{k}": v for k, v in ssl.model.state_dict().items()}
        extra = sorted(set(saved.tensors) - set(expected) - {"log_phi"})
        missing = sorted(set(expected) - set(saved.tensors))
        if missing or extra:
            raise ValueError(f"{weights}: missing tensors {missing}, unexpected tensors {extra}")
        for k, ref in expected.items():
            t = saved.tensors[k]
            if tuple(t.shape) != tuple(ref.shape) or t.dtype != ref.dtype:
                raise ValueError(f"{weights}: tensor {k!r} is {tuple(t.shape)} {t.dtype}, expected {tuple(ref.shape)} {ref.dtype}")
        ssl.model.load_state_dict({k[len("model."):]: saved.tensors[k] for k in expected})
        ssl.model.prior.eval()
        ssl.log_phi = saved.tensors["log_phi"].to(ssl.device)
        ssl.vocab = vocab
        ssl.history = saved.history
        return ssl

    def get_params(self) -> dict:
        """Every setting by name (scikit-learn style): ``SSL(**ssl.get_params())`` is an unfitted copy."""
        return self.config.flat()

    def __repr__(self) -> str:
        state = f"fitted {len(self.history)} epochs" if self.log_phi is not None else "unfitted"
        return f"SSL(K={self.K}, V={self.V}, P={self.config.sampler.num_particles}, {state})"
