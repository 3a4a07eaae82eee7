"""The user-facing estimator: ``SSL(K=...).fit(corpus)`` and ``pyro_ssl.fit(corpus, K=50)``.

Wraps the three layers: the Pyro model (:mod:`pyro_ssl.model`), the sampler
(:mod:`pyro_ssl.smc`) and learning (:mod:`pyro_ssl.infer`), with the estimator verbs users
know from hmmlearn, scikit-learn and gensim: ``fit`` (with early stopping on a validation set),
``score``, ``perplexity``, ``transform`` (document-topic proportions), ``predict``,
``predict_proba`` (posterior marginals with their Monte Carlo error), ``decode``, ``sample``,
``show_topics``, ``report``, ``save``/``load``.
"""

from __future__ import annotations

import copy
import json
import os
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
from .config import SSLConfig, check_bool, check_dir, check_device, check_dtype, check_float, check_int, check_seed
from .data.corpus import Corpus
from .data.shard import TokenShard, shard_bounds
from .data.vocabulary import Vocabulary
from .infer.em import StochasticEM
from .infer.reduce import LOCAL
from .infer.stopping import EarlyStopping
from .infer.svi import SVIConfig, train_svi
from .model import TopicalSSL, length_mask, log_joint
from .runtime import kept_processes
from .smc.blocked import blocked_csmc_sweep
from .smc.csmc import csmc_sweep, particle_filter
from .smc.resampling import conditional_schemes, get_resampler, inverse_cdf

__all__ = ["SSL", "as_tokens", "register_front_end"]

_FRONT_ENDS: dict = {}
"""Verbs implemented by front-end modules above this layer (``"report"``: :mod:`pyro_ssl.report`),
registered when those modules are imported (``import pyro_ssl`` imports them)."""


def register_front_end(name: str, fn) -> None:
    """Let a front-end module provide ``SSL.<name>`` (the estimator cannot import upwards)."""
    _FRONT_ENDS[name] = fn


def _check_padded(tokens, lengths, name: str = "data"):
    """Validate a padded pair: ``tokens (D, T)`` integer ids, ``lengths (D,)`` in ``[1, T]``.

    Returns ``(tokens long, lengths long)``. Floats, bools and lengths that do not fit the
    token width are refused (they used to be truncated, or fail deep in the sampler).
    """
    if not torch.is_tensor(tokens):
        raise TypeError(f"{name}: tokens must be a (D, T) integer tensor, got {type(tokens).__name__}")
    if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
        raise TypeError(f"{name}: tokens have dtype {tokens.dtype}; token ids must be integers (e.g. torch.long)")
    if not torch.is_tensor(lengths):
        try:
            lengths = torch.as_tensor(lengths)
        except (TypeError, ValueError, RuntimeError) as e:
            raise TypeError(f"{name}: lengths must be a (D,) integer tensor or list, got {lengths!r}") from e
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise TypeError(f"{name}: lengths have dtype {lengths.dtype}; lengths must be integers")
    if tokens.ndim != 2 or lengths.shape != tokens.shape[:1]:
        raise ValueError(f"{name}: tokens must be (D, T) and lengths (D,), got {tuple(tokens.shape)} and "
                         f"{tuple(lengths.shape)}")
    if tokens.shape[0] == 0:
        raise ValueError(f"{name} has no documents; give at least one non-empty document")
    tokens, lengths = tokens.long().cpu(), lengths.long().cpu()
    if (lengths < 1).any():
        bad = int((lengths < 1).nonzero()[0])
        raise ValueError(f"{name}: document {bad} has length {int(lengths[bad])}; every document needs at least "
                         "one token (drop empty documents, e.g. Corpus.filter_min_length(1))")
    if (lengths > tokens.shape[1]).any():
        bad = int((lengths > tokens.shape[1]).nonzero()[0])
        raise ValueError(f"{name}: document {bad} has length {int(lengths[bad])} but tokens are only "
                         f"{tokens.shape[1]} wide; lengths must be <= tokens.shape[1]")
    return tokens, lengths


def as_tokens(data, vocab_size: int | None = None, name: str = "data"):
    """Coerce documents to padded tensors, refusing anything that would be silently misread.

    Accepts a :class:`~pyro_ssl.data.Corpus` (or on-disk corpus), a sequence of token-id
    sequences (integers only: floats, bools, strings and nested lists are refused), or a
    ``(tokens (D, T), lengths (D,))`` pair. ``name`` names the argument in errors.

    Returns:
        ``(tokens (D, T) long, lengths (D,) long, V, vocab or None)``.
    Raises:
        TypeError: ids that are not integers, texts instead of ids.
        ValueError: no documents, an empty document, lengths beyond the token width, ids
            outside ``[0, vocab_size)``.
    """
    if vocab_size is not None:
        vocab_size = check_int("vocab_size", vocab_size, 1)
    vocab = getattr(data, "vocab", None)
    if isinstance(data, (str, bytes, os.PathLike)):
        raise TypeError(f"{name} is a path or text ({data!r}); read files with pyro_ssl.data.load_corpus and "
                        "texts with Corpus.from_texts, then pass the corpus")
    if hasattr(data, "padded") and hasattr(data, "V"):
        if len(data) == 0:
            raise ValueError(f"{name} has no documents (an empty corpus); give at least one non-empty document")
        tokens, lengths = _check_padded(*data.padded(), name=name)
        V = max(int(data.V), vocab_size or 0)
        if vocab_size is not None:
            top = int(tokens[length_mask(lengths, tokens.shape[1])].max())
            if top >= vocab_size:
                raise ValueError(f"{name}: token id {top} out of range for vocab_size={vocab_size}")
    else:
        if isinstance(data, tuple) and len(data) == 2 and torch.is_tensor(data[0]):
            tokens, lengths = _check_padded(data[0], data[1], name=name)
        else:
            if not isinstance(data, Sequence) or len(data) == 0:
                raise ValueError(f"{name} must be a Corpus, a non-empty sequence of token-id sequences, or "
                                 f"(tokens, lengths); got {type(data).__name__}"
                                 + (" of length 0" if isinstance(data, Sequence) else ""))
            for d, doc in enumerate(data):
                if isinstance(doc, (str, bytes)):
                    raise TypeError(f"{name}: document {d} is a string ({doc[:30]!r}); encode texts first "
                                    "(pyro_ssl.data.Corpus.from_texts(texts)) and pass the corpus")
            try:
                corpus = Corpus(data)  # refuses float, bool and nested ids, naming the document
            except (TypeError, ValueError) as e:
                raise type(e)(f"{name}: {e}") from None
            if len(corpus) and bool((corpus.lengths < 1).any()):
                bad = int((corpus.lengths < 1).nonzero()[0])
                raise ValueError(f"{name}: document {bad} is empty; drop empty documents before fitting")
            tokens, lengths = _check_padded(*corpus.padded(), name=name)
        mask = length_mask(lengths, tokens.shape[1])
        if int(tokens[mask].min()) < 0:
            bad = int((tokens.masked_fill(~mask, 0) < 0).any(1).nonzero()[0])
            raise ValueError(f"{name}: document {bad} has a negative token id; token ids must be in [0, V)")
        V = int(tokens[mask].max()) + 1
        if vocab_size is not None:
            if V > vocab_size:
                raise ValueError(f"{name}: token id {V - 1} out of range for vocab_size={vocab_size}")
            V = vocab_size
    return tokens, lengths, V, vocab


def _check_seeds(seeds) -> tuple[int, ...]:
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or len(seeds) == 0:
        raise ValueError(f"seeds must be a non-empty sequence of integers (one estimate per seed), got {seeds!r}")
    return tuple(check_seed("seeds[]", s) for s in seeds)


def _check_completion(tokens, lengths, T1, V: int | None):
    """Validated ``(tokens (D, T) long, lengths (D,) long, T1)`` of a completion set."""
    T1 = check_int("T1", T1, 0)
    if not torch.is_tensor(tokens):
        corpus_tokens, corpus_lengths, _, _ = as_tokens(tokens, V, name="tokens")
        if lengths is not None:
            lengths = torch.as_tensor(lengths)
            if lengths.shape != corpus_lengths.shape or bool((lengths > corpus_lengths).any()):
                raise ValueError("lengths must match the documents given as lists (or pass lengths=None)")
        tokens = corpus_tokens
        lengths = corpus_lengths if lengths is None else lengths
    tokens, lengths, _, _ = as_tokens((tokens, lengths), V, name="tokens")
    if not bool((lengths > T1).any()):
        raise ValueError(f"T1={T1} but no document is longer than T1 ({int(lengths.max())} tokens at most): "
                         "nothing to complete; choose T1 < the document lengths")
    return tokens, lengths, T1


def _is_completion_set(eval_data) -> bool:
    """``(tokens, lengths, T1)``: a completion set, as opposed to held-out documents."""
    return (isinstance(eval_data, (tuple, list)) and len(eval_data) == 3 and isinstance(eval_data[2], int)
            and not isinstance(eval_data[2], bool))


def _check_eval_data(eval_data, V: int):
    """Validated ``eval_data``: a completion set ``(tokens, lengths, T1)`` (lists accepted) gives that
    triple; held-out documents (anything :func:`as_tokens` reads) give ``(tokens, lengths)``."""
    if _is_completion_set(eval_data):
        return _check_completion(*eval_data, V)
    if isinstance(eval_data, (str, bytes)) or not isinstance(eval_data, (Sequence, Corpus)):
        raise ValueError("eval_data must be a completion set (tokens, lengths, T1), e.g. (split.eval_tokens, "
                         "split.eval_lengths, split.T1) from pyro_ssl.data.completion_split, or held-out documents; "
                         f"got {type(eval_data).__name__}")
    tokens, lengths, _, _ = as_tokens(eval_data, V, name="eval_data")
    return tokens, lengths


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
                f"use one of {conditional_schemes()} (the unconditional schemes serve the evaluation filter)"
            )
        self.device = check_device(device)
        self.dtype = check_dtype(dtype)
        self.model: TopicalSSL | None = None
        self.log_phi: torch.Tensor | None = None
        self.vocab = None
        self.V: int | None = None
        self.history: list[dict] = []
        self.method = "pg"
        self.best_epoch: int | None = None
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
            eval_data: optional validation set scored every ``eval_every`` epochs with
                ``eval_particles`` filter particles: a ``(tokens, lengths, T1)`` completion set
                (e.g. from :func:`pyro_ssl.data.completion_split`), recorded as
                ``completion_ppl``, or held-out documents (anything :func:`as_tokens` takes),
                recorded as per-token ``heldout_log_lik``.
            callback: called as ``callback(ssl, entry)`` after every epoch; return ``True``
                to stop early.

        Early stopping: with ``patience > 0`` (a :class:`~pyro_ssl.config.LearningConfig`
        setting, ``SSL(patience=3)``) and ``eval_data``, the fit stops after ``patience``
        evaluations in a row that do not improve the best validation value by more than
        ``min_delta``, and the state of the best epoch (LSTM weights, topics, paths, counts,
        Adam) is restored; ``best_epoch`` names it and ``history`` keeps every epoch run. The
        epoch counter is not rewound, so a further ``fit`` continues with fresh randomness.
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
        if method not in ("pg", "svi"):
            raise ValueError(f"method must be 'pg' (particle Gibbs) or 'svi', got {method!r}")
        if svi_settings and method == "pg":
            raise TypeError(f"unexpected arguments {sorted(svi_settings)} for method='pg'")
        epochs = None if epochs is None else check_int("epochs", epochs, 1)
        eval_every = check_int("eval_every", eval_every, 1)
        eval_particles = check_int("eval_particles", eval_particles, 1)
        check_bool("resume", resume)
        if callback is not None and not callable(callback):
            raise ValueError(f"callback must be callable as callback(ssl, entry) or None, got {callback!r}")
        if checkpoint_dir is not None:
            check_dir("checkpoint_dir", checkpoint_dir)
        elif resume:
            raise ValueError("resume=True needs checkpoint_dir (the directory holding checkpoint.pt)")
        vocab_size = None if vocab_size is None else check_int("vocab_size", vocab_size, 1)
        if vocab_size is not None and self.V is not None and vocab_size != self.V:
            raise ValueError(f"vocab_size={vocab_size} but this model was built with V={self.V}")
        tokens, lengths, V, vocab = as_tokens(data, vocab_size or self.V)
        if eval_data is not None:
            eval_data = _check_eval_data(eval_data, V)
        if self.model is None:
            self._build(V)
            self.vocab = vocab
        elif V > self.V:
            raise ValueError(f"data has vocabulary size {V} but the model was built with V={self.V}")
        patience = self.config.learning.patience
        if patience and eval_data is None:
            raise ValueError(f"patience={patience} needs a validation set: pass eval_data "
                             "(a (tokens, lengths, T1) completion set or held-out documents)")
        on_epoch = self._epoch_hook(eval_data, eval_every, eval_particles, callback)
        if method == "svi" and patience:
            raise ValueError("early stopping (patience > 0) is implemented for method='pg'")
        # The validation scores' processes (eval_workers) start once, in the background, and
        # serve every epoch's score, instead of starting per score (about 2 s each).
        scorers = self.config.learning.eval_workers if eval_data is not None and self.device.type == "cpu" else 1
        with kept_processes(scorers):
            if method == "svi":
                return self._fit_svi(tokens, lengths, epochs, progress, on_epoch, svi_settings)
            if self._em is None:
                shard = TokenShard(tokens.to(self.device), lengths.to(self.device), V=self.V)
                initial = None
                if self.config.learning.init == "hmm" and not (resume and checkpoint_dir is not None):
                    initial = self._hmm_paths(tokens, lengths)
                self._em = StochasticEM(self.model, shard, self.config, initial_paths=initial)
            stopper = EarlyStopping(patience, self.config.learning.min_delta) if patience else None
            return self._train(self._em, epochs, on_epoch=on_epoch, progress=progress,
                               checkpoint_dir=checkpoint_dir, resume=resume, stopper=stopper)

    def _hmm_paths(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Start paths ``(D, T)`` sampled from an HMM fitted by EM (``init="hmm"``, one process)."""
        docs = [tokens[i, : int(n)].cpu() for i, n in enumerate(lengths)]
        hmm = HMM(self.K, beta=self.config.model.beta, n_iter=30, seed=self.seed)
        hmm.fit(docs, self.V)
        gen = torch.Generator().manual_seed(self.seed)
        return hmm.sample_paths(tokens.cpu(), lengths.cpu(), generator=gen)

    def _epoch_hook(self, eval_data, eval_every, eval_particles, callback):
        """``hook(entry, log_phi, after_record=None) -> stop`` shared by both learning methods: score
        and record the epoch, then ``after_record(entry) -> stop`` (early stopping, a checkpoint),
        then ask the callback."""

        completion = _is_completion_set(eval_data)

        def hook(entry: dict, log_phi: torch.Tensor, after_record=None) -> bool:
            self.log_phi = log_phi
            if eval_data is not None and entry["epoch"] % eval_every == 0:
                t0 = time.perf_counter()
                seeds = (entry["epoch"],)
                reducer = self._em.reducer if self._em is not None else LOCAL
                if reducer.world_size > 1:
                    # A data-parallel fit: each rank scores its share of the rows (keyed as in the
                    # whole set) and the sums are summed, so every rank records the same value.
                    tokens, lengths = eval_data[0], eval_data[1]
                    rows = shard_bounds(len(tokens), reducer.rank, reducer.world_size)
                    ll, n = evaluation.held_out_sums(self.prior, self.log_phi, tokens, lengths,
                                                     eval_data[2] if completion else 0, eval_particles, seeds, rows=rows)
                    ll, n = reducer.sum(torch.cat([ll.to(self.device), torch.tensor([float(n)], dtype=torch.float64,
                                                                                      device=self.device)])).tolist()
                    if completion:
                        entry["completion_ppl"] = evaluation.perplexity(ll, int(n))
                    else:
                        entry["heldout_log_lik"] = ll / n
                elif completion:
                    est = self.completion_perplexity(*eval_data, num_particles=eval_particles, seeds=seeds)
                    entry["completion_ppl"] = est.mean
                else:
                    entry["heldout_log_lik"] = self.score(eval_data, num_particles=eval_particles, seeds=seeds).mean
                entry["eval_seconds"] = time.perf_counter() - t0
            self.history.append(entry)
            stop = False
            if after_record is not None:
                stop = bool(after_record(entry))  # checkpoint before the callback: an interrupt there loses nothing
            return bool(callback is not None and callback(self, entry)) or stop

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
               checkpoint_dir=None, resume: bool = False, stopper: EarlyStopping | None = None) -> "SSL":
        """The epoch loop around ``em`` (one process, or this rank of a data-parallel fit);
        ``stopper`` (one process) stops early and restores the best state."""
        from tqdm.auto import tqdm

        main = em.reducer.is_main
        ckpt_file = Path(checkpoint_dir) / persistence.CHECKPOINT_FILE if checkpoint_dir is not None else None
        if ckpt_file is not None:
            check_dir("checkpoint_dir", checkpoint_dir)
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
                if stopper is not None and state.get("early_stopping") is not None:
                    stopper.load_state_dict(state["early_stopping"])
        epochs = self.config.learning.epochs if epochs is None else check_int("epochs", epochs, 1)
        remaining = max(start_epoch + epochs - em.epoch, 0)
        bar = tqdm(range(remaining), desc="pyro-ssl fit", disable=not (progress and main), unit="epoch")
        on_epoch = on_epoch or self._epoch_hook(None, 1, 0, None)

        def save():
            state = self._checkpoint_state(em, fingerprint, start_epoch)  # a collective
            if stopper is not None:
                state["early_stopping"] = stopper.state_dict()
            if main:
                persistence.save_checkpoint(ckpt_file, state)

        def after_record(entry):
            # Between recording the epoch (with its validation value) and the user's callback:
            # the stopper first, so that a checkpoint holds the best state up to this epoch.
            # The warm-up only places the exact chain; early stopping watches the epochs after it.
            stop = stopper.update(entry, em.state_dict) if stopper is not None and not entry["warmup"] else False
            if ckpt_file is not None:
                save()
            return stop

        for _ in bar:
            entry = em.run_epoch()
            stop = on_epoch(entry, em.log_phi, after_record)
            self.log_phi = em.log_phi
            postfix = {"logp/tok": f"{entry['log_joint_per_token']:.3f}", "s": f"{entry['seconds']:.2f}"}
            if "completion_ppl" in entry:
                postfix["ppl"] = f"{entry['completion_ppl']:.1f}"
            bar.set_postfix(postfix)
            if stop:
                break
        if em.counts is None:
            em.initialize()
        if stopper is not None and stopper.best_state is not None:
            self.best_epoch = stopper.best_epoch
            if stopper.best_epoch != em.epoch:
                epoch = em.epoch
                em.load_state_dict(stopper.best_state)
                em.epoch = epoch  # keyed randomness stays fresh if the fit continues
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
        epoch, start, history = state["epoch"], state["start_epoch"], state["history"]
        for name, v in (("epoch", epoch), ("start_epoch", start)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{f}: {name} must be an integer >= 0, got {v!r}")
        if start > epoch:
            raise ValueError(f"{f}: start_epoch {start} is after epoch {epoch}")
        if not isinstance(history, list) or not all(isinstance(e, dict) for e in history):
            raise ValueError(f"{f}: history must be a list of per-epoch dicts, got {type(history).__name__}")
        if len(history) != epoch:
            raise ValueError(f"{f}: history holds {len(history)} epochs but the checkpoint is at epoch {epoch}")
        if not isinstance(state["em"], dict) or state["em"].get("epoch") != epoch:
            raise ValueError(f"{f}: the EM state is not at the checkpoint's epoch {epoch}")
        for name in ("K", "V"):
            if isinstance(state[name], bool) or not isinstance(state[name], int):
                raise ValueError(f"{f}: {name} must be an integer, got {state[name]!r}")
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
        free = {"epochs", "eval_particles", "patience", "min_delta"}  # how long to run and how to score may change
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
    def score(self, data, num_particles: int | None = None, seeds=(0, 1, 2), *, per_token: bool = True) -> evaluation.Estimate:
        """Held-out log likelihood of ``data`` by the particle filter: **per token** by default.

        Each seed gives ``sum_d log Zhat_d / N`` over the ``N`` tokens of ``data``
        (``log Zhat_d`` estimates ``log p(x_d)``, biased low by about half its variance);
        the :class:`~pyro_ssl.evaluation.Estimate` holds the mean and sd over the particle-filter
        ``seeds`` (the evaluator's Monte Carlo error; refit with other training seeds for the
        spread between training runs).
        hmmlearn's ``score`` is the *total* ``log p(X)``; ``per_token=False`` returns that
        (the per-token value times ``N``). ``perplexity`` is ``exp(-per-token score)``.
        ``num_particles`` defaults to the ``eval_particles`` setting.
        """
        self._check_fitted()
        P = self.config.learning.eval_particles if num_particles is None else check_int("num_particles", num_particles, 1)
        seeds = _check_seeds(seeds)
        tokens, lengths, _, _ = as_tokens(data, self.V)
        est = evaluation.heldout_log_likelihood(self.prior, self.log_phi, tokens, lengths, P, seeds,
                                                workers=self.config.learning.eval_workers)
        if per_token:
            return est
        n = int(lengths.sum())
        values = [v * n for v in est.values]
        return evaluation.Estimate(est.mean * n, est.std * n, values, est.num_particles)

    def perplexity(self, data, T1: int | None = None, num_particles: int | None = None, seeds=(0, 1, 2)) -> evaluation.Estimate:
        """Perplexity ``exp(-sum log p / tokens)`` of ``data`` by the particle filter.

        ``T1=None``: of every token (``exp(-score(data))``, the held-out perplexity).
        ``T1``: document completion, the tokens after the first ``T1`` of each document given
        those (:meth:`completion_perplexity`). Mean and spread over ``seeds``; ``num_particles``
        defaults to the ``eval_particles`` setting.
        """
        self._check_fitted()
        tokens, lengths, _, _ = as_tokens(data, self.V)
        P = num_particles or self.config.learning.eval_particles
        return evaluation.completion_perplexity(self.prior, self.log_phi, tokens, lengths, 0 if T1 is None else int(T1),
                                                P, seeds, workers=self.config.learning.eval_workers)

    def token_log_probs(self, tokens: torch.Tensor, lengths: torch.Tensor, seed: int = 0,
                        num_particles: int | None = None) -> torch.Tensor:
        """``(B, T)`` particle-filter estimates of ``log p(x_t | x_<t)`` (0 at padding), with
        ``num_particles`` particles (default: the ``eval_particles`` setting): the
        :class:`~pyro_ssl.baselines.LanguageModel` interface.

        Their sum over a document is ``log Zhat``, whose exponential is unbiased for ``p(x)``.
        """
        self._check_fitted()
        tokens, lengths, _, _ = as_tokens((tokens, lengths), self.V)
        seed = check_seed("seed", seed)
        P = self.config.learning.eval_particles if num_particles is None else check_int("num_particles", num_particles, 1)
        return evaluation.filter_log_increments(self.prior, self.log_phi, tokens, lengths, P, seed=seed,
                                                workers=self.config.learning.eval_workers)

    def completion_perplexity(self, tokens, lengths, T1: int, num_particles: int | None = None, seeds=(0, 1, 2)):
        """Document-completion perplexity of the continuation after ``T1`` tokens.

        ``tokens``: ``(D, T)`` integer ids (or a list of token-id lists), ``lengths``: ``(D,)``
        (``None`` with lists: their lengths); at least one document must be longer than ``T1``.
        ``num_particles`` defaults to the ``eval_particles`` setting. Returns an
        :class:`~pyro_ssl.evaluation.Estimate`: mean and sd over the particle-filter ``seeds`` for
        this one fitted model (Monte Carlo error of the evaluator, not the spread over training seeds).
        """
        self._check_fitted()
        tokens, lengths, T1 = _check_completion(tokens, lengths, T1, self.V)
        P = self.config.learning.eval_particles if num_particles is None else check_int("num_particles", num_particles, 1)
        seeds = _check_seeds(seeds)
        return evaluation.completion_perplexity(self.prior, self.log_phi, tokens, lengths, T1, P, seeds,
                                                workers=self.config.learning.eval_workers)

    def _sweep(self, x, n, P, z, gen, diagnostics=False):
        """One E-step sweep of the configured kernel over ``(B, T)`` documents from paths ``z``."""
        sampler = self.config.sampler
        if sampler.kernel == "blocked":
            return blocked_csmc_sweep(self.prior, self.log_phi, x, n, P, z, block_size=sampler.block_size,
                                      stride=sampler.block_stride, generator=gen,
                                      resample_below=sampler.resample_below_or_none, resampling=sampler.resampling,
                                      final_draw=sampler.block_final_draw)
        return csmc_sweep(self.prior, self.log_phi, x, n, P, z, ancestor_lag=sampler.ancestor_lag,
                          generator=gen, diagnostics=diagnostics)

    def _posterior_chains(self, tokens, lengths, *, num_chains: int, burn_in: int, num_sweeps: int,
                          num_particles: int | None, seed: int, diagnostics: bool = False):
        """Independent particle-Gibbs chains, ``num_chains`` per document, in chunks of documents.

        Yields ``(docs (c,), x (c * C, t), n (c * C,), sweeps)`` per chunk: the chunk's rows are
        its documents' chains (document-major, ``C = num_chains`` rows each) and ``sweeps`` is
        an iterator over the ``num_sweeps`` kept sweeps' :class:`~pyro_ssl.smc.csmc.SweepResult`
        (``path (c * C, t)``). Each chain starts from a particle-filter draw and discards
        ``burn_in`` sweeps; the configured kernel does the sweeps.
        """
        self._check_fitted()
        if num_chains < 1 or burn_in < 0 or num_sweeps < 1:
            raise ValueError(f"need num_chains >= 1, burn_in >= 0 and num_sweeps >= 1, got "
                             f"{num_chains}, {burn_in}, {num_sweeps}")
        P = num_particles or self.config.sampler.num_particles
        gen = torch.Generator(device=self.device).manual_seed(seed)
        D = tokens.shape[0]
        chunk_docs = max(1, 4096 // num_chains)  # a sweep's memory grows with rows x particles x (t + K)

        def sweeps(x, n):
            z = particle_filter(self.prior, self.log_phi, x, n, P, resampling="multinomial", generator=gen).path
            for it in range(burn_in + num_sweeps):
                res = self._sweep(x, n, P, z, gen, diagnostics=diagnostics and it >= burn_in)
                z = res.path
                if it >= burn_in:
                    yield res

        with torch.no_grad():
            for start in range(0, D, chunk_docs):
                docs = torch.arange(start, min(start + chunk_docs, D))
                rows = docs.repeat_interleave(num_chains)
                n = lengths[rows].to(self.device)
                x = tokens[rows, : int(n.max())].to(self.device)
                yield docs, x, n, sweeps(x, n)

    @torch.no_grad()
    def predict(self, data, num_sweeps: int = 20, num_particles: int | None = None, seed: int = 0) -> list[list[int]]:
        """One posterior draw of every document's topic path: a particle-filter draw refined by
        ``num_sweeps`` CSMC sweeps (the configured kernel).

        Returns one list of topic ids per document (its own length). For the posterior
        marginals see :meth:`predict_proba`; for the best path found, :meth:`decode`.
        """
        self._check_fitted()
        num_sweeps = check_int("num_sweeps", num_sweeps, 0)
        P = self.config.sampler.num_particles if num_particles is None else check_int("num_particles", num_particles, 2)
        seed = check_seed("seed", seed)
        tokens, lengths, _, _ = as_tokens(data, self.V)
        gen = torch.Generator(device=self.device).manual_seed(seed)
        x, n = tokens.to(self.device), lengths.to(self.device)
        z = particle_filter(self.prior, self.log_phi, x, n, P, resampling="multinomial", generator=gen).path
        for _ in range(num_sweeps):
            z = self._sweep(x, n, P, z, gen).path
        return [z[i, : int(n[i])].tolist() for i in range(z.shape[0])]

    def predict_proba(self, data, *, num_chains: int = 4, burn_in: int = 10, num_sweeps: int = 10,
                      num_particles: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior marginals ``p(z_t = k | x)`` of every token, with their Monte Carlo error.

        ``num_chains`` independent particle-Gibbs chains per document (each from a
        particle-filter draw, ``burn_in`` sweeps discarded) average the one-hot topic of every
        token over ``num_sweeps`` kept sweeps; the estimate is the mean over chains and its
        standard error the spread across the (independent) chains, ``sd / sqrt(num_chains)``
        (not ``p (1 - p) / n`` over correlated sweeps). The draws are exact particle Gibbs with
        ``ancestor_lag="full"`` or ``kernel="blocked"``; a truncated lag (the default) is an
        approximation (``docs/learning.md``).

        Returns:
            ``(proba (D, T, K), se (D, T, K))`` float64, ``T`` the longest document; rows of
            ``proba`` sum to 1 at real tokens and are 0 at padding.
        """
        tokens, lengths, _, _ = as_tokens(data, self.V)
        D, T = tokens.shape
        proba = torch.zeros(D, T, self.K, dtype=torch.float64)
        se = torch.full_like(proba, float("nan") if num_chains < 2 else 0.0)  # one chain cannot measure its error
        for docs, x, n, sweeps in self._posterior_chains(tokens, lengths, num_chains=num_chains, burn_in=burn_in,
                                                         num_sweeps=num_sweeps, num_particles=num_particles, seed=seed):
            total = torch.zeros(*x.shape, self.K, dtype=torch.float64, device=x.device)  # (R, t, K)
            for res in sweeps:
                total += torch.nn.functional.one_hot(res.path, self.K).to(torch.float64)
            per_chain = (total * length_mask(n, x.shape[1]).unsqueeze(-1) / num_sweeps).cpu()
            per_chain = per_chain.reshape(docs.numel(), num_chains, x.shape[1], self.K)  # independent values
            proba[docs, : x.shape[1]] = per_chain.mean(1)
            if num_chains > 1:
                se[docs, : x.shape[1]] = per_chain.std(1) / num_chains**0.5
        return proba, se

    def transform(self, data, *, num_chains: int = 1, burn_in: int = 10, num_sweeps: int = 20,
                  num_particles: int | None = None, seed: int = 0) -> torch.Tensor:
        """Document-topic proportions ``(D, K)`` (scikit-learn's ``transform``, gensim's
        ``get_document_topics``): the posterior mean share of each document's tokens in each topic,
        ``E[(1 / L) sum_t 1{z_t = k} | x]``, averaged over ``num_sweeps`` kept sweeps of
        ``num_chains`` chains per document (after ``burn_in`` sweeps). Rows sum to 1.
        """
        tokens, lengths, _, _ = as_tokens(data, self.V)
        out = torch.zeros(tokens.shape[0], self.K, dtype=torch.float64)
        for docs, x, n, sweeps in self._posterior_chains(tokens, lengths, num_chains=num_chains, burn_in=burn_in,
                                                         num_sweeps=num_sweeps, num_particles=num_particles, seed=seed):
            counts = torch.zeros(x.shape[0], self.K, dtype=torch.float64, device=x.device)  # (R, K)
            mask = length_mask(n, x.shape[1]).to(torch.float64)
            for res in sweeps:
                counts.scatter_add_(1, res.path, mask)
            share = counts / (n.unsqueeze(-1) * num_sweeps)
            out[docs] = share.reshape(docs.numel(), num_chains, self.K).mean(1).cpu()
        return out

    def decode(self, data, *, num_chains: int = 1, burn_in: int = 0, num_sweeps: int = 20,
               num_particles: int | None = None, seed: int = 0) -> tuple[list[list[int]], torch.Tensor]:
        """The most probable topic path **the sampler found** (not a guaranteed MAP: no
        Viterbi exists for an LSTM prior): among every particle of every sweep of every chain,
        the path with the highest ``log p(x, z)`` under the fitted model.

        Returns:
            ``(paths, log_joint)``: one list of topic ids per document, and ``(D,)`` their
            ``log p(x, z)``.
        """
        tokens, lengths, _, _ = as_tokens(data, self.V)
        D, T = tokens.shape
        best_lj = torch.full((D,), -float("inf"), dtype=torch.float64)
        best_z = torch.zeros(D, T, dtype=torch.long)
        for docs, x, n, sweeps in self._posterior_chains(tokens, lengths, num_chains=num_chains, burn_in=burn_in,
                                                         num_sweeps=num_sweeps, num_particles=num_particles, seed=seed,
                                                         diagnostics=True):
            R, t = x.shape
            for res in sweeps:
                # Every final particle is a candidate (the blocked kernel returns only its path).
                cand = res.particles if res.particles is not None else res.path.unsqueeze(1)  # (R, P', t)
                Pc = cand.shape[1]
                lj = log_joint(self.prior, self.log_phi, x.repeat_interleave(Pc, 0), cand.reshape(R * Pc, t),
                               n.repeat_interleave(Pc)).to(torch.float64).reshape(docs.numel(), -1).cpu()
                val, idx = lj.max(1)  # best over the document's chains x particles
                path = cand.reshape(docs.numel(), -1, t)[torch.arange(docs.numel()), idx].cpu()
                better = val > best_lj[docs]
                best_lj[docs[better]] = val[better]
                best_z[docs[better], :t] = path[better]
        return [best_z[d, : int(lengths[d])].tolist() for d in range(D)], best_lj

    @torch.no_grad()
    def sample(self, num_docs: int, length: int, temperature: float = 1.0, seed: int = 0):
        """Generate ``(topics (N, T), words (N, T))`` from the fitted model.

        ``temperature`` divides the logits of both the topic prior and the topic-word
        distributions (1 = the model; < 1 sharper; > 1 flatter).
        """
        self._check_fitted()
        num_docs = check_int("num_docs", num_docs, 1)
        length = check_int("length", length, 1)
        temperature = check_float("temperature", temperature, low=0.0, low_open=True)
        seed = check_seed("seed", seed)
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
        num_words = check_int("num_words", num_words, 1)
        top = self.log_phi.topk(min(num_words, self.V), dim=-1).indices.tolist()
        itos = getattr(self.vocab, "itos", None)
        return [[itos[i] if itos else str(i) for i in row] for row in top]

    def topic_usage(self) -> torch.Tensor:
        """``(K,)`` share of tokens in each topic: of the training paths when fitted in this
        process, else of 256 x 64 topics sampled from the model's prior (a loaded model)."""
        self._check_fitted()
        if self._em is not None and self._em.counts is not None:
            usage = self._em.counts.sum(-1).to(torch.float64).cpu()
        else:
            # A loaded model has no training paths: rank by usage under its own prior instead.
            z, _ = self.sample(256, 64, seed=0)
            usage = torch.bincount(z.reshape(-1).cpu(), minlength=self.K).to(torch.float64)
        return usage / usage.sum().clamp_min(1e-300)

    def topic_order(self) -> list[int]:
        """Topic ids, most used first (:meth:`topic_usage`): the order of every topic listing."""
        return self.topic_usage().argsort(descending=True, stable=True).tolist()

    def show_topics(self, num_topics: int = -1, num_words: int = 10) -> list[tuple[int, str]]:
        """gensim-style ``[(k, "0.031*"word" + ...")]``, topics ordered by usage (:meth:`topic_order`;
        ``num_topics=-1``: all)."""
        self._check_fitted()
        if check_int("num_topics", num_topics, -1) == 0:
            raise ValueError("num_topics must be -1 (all) or >= 1, got 0")
        num_words = check_int("num_words", num_words, 1)
        order = self.topic_order()
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

    def report(self, path="report.html", **kwargs) -> Path:
        """Write a self-contained HTML report of the model (topics, documents coloured by
        topic, training and validation curves, mixing, an optional comparison table) and
        return its path; see :func:`pyro_ssl.report.write_report` for the arguments."""
        self._check_fitted()
        writer = _FRONT_ENDS.get("report")
        if writer is None:  # only when pyro_ssl.estimator was loaded without the package
            raise RuntimeError("the report front-end is not loaded; import pyro_ssl.report")
        return writer(self, path, **kwargs)

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> Path:
        """Save to a directory (JSON config, vocabulary, safetensors weights); see :mod:`pyro_ssl.io`."""
        self._check_fitted()
        check_dir("path", path)
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors["log_phi"] = self.log_phi
        return persistence.save_model(
            path, config=self.config.to_dict(), K=self.K, V=self.V, dtype=self.dtype, tensors=tensors,
            vocab=self.vocab.to_dict() if self.vocab is not None else None, history=self.history,
            best_epoch=self.best_epoch,
        )

    @classmethod
    def load(cls, path, device=None) -> "SSL":
        """Load a model saved by :meth:`save` (checksums and tensors are checked; errors name the file)."""
        device = check_device(device)
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
        ssl.best_epoch = saved.best_epoch
        return ssl

    def snapshot(self) -> "SSL":
        """A fitted copy of the model as it is now (LSTM, ``phi``, vocabulary, history), without the
        training state: later ``fit`` calls on ``self`` do not change it, and it cannot continue
        training. :class:`~pyro_ssl.ensemble.SnapshotEnsemble` averages the predictions of several."""
        self._check_fitted()
        snap = type(self)(device=self.device, dtype=self.dtype, **self.config.flat())
        snap.model = copy.deepcopy(self.model)
        snap.log_phi = self.log_phi.clone()
        snap.V, snap.vocab, snap.method, snap.best_epoch = self.V, self.vocab, self.method, self.best_epoch
        snap.history = [dict(e) for e in self.history]
        return snap

    def get_params(self) -> dict:
        """Every setting by name (scikit-learn style): ``SSL(**ssl.get_params())`` is an unfitted copy."""
        return self.config.flat()

    def __repr__(self) -> str:
        state = f"fitted {len(self.history)} epochs" if self.log_phi is not None else "unfitted"
        return f"SSL(K={self.K}, V={self.V}, P={self.config.sampler.num_particles}, {state})"
