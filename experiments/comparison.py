"""One comparison harness: the SSL against the baselines on the same completion split (SPEC 4).

Fixed settings on one split, no model selection: a tool for experiments on a given
configuration. The numbers of ``docs/results.md`` come from ``experiments/protocol.py``
instead, which chooses every setting on validation reviews and scores test once.

:func:`compare` is one loop over models. Every model comes from a factory
(:func:`model_factories`: name -> ``factory(K, seed)``), is fitted on ``split.train`` (the
observed prefixes: the same tokens, vocabulary and ``<unk>`` handling for all) with
``fit(train, vocab_size=V)``, and is scored through the same language-model interface:
``completion_log_likelihood(tokens, lengths, T1)`` summed over the held-out continuations
``split.eval_tokens[:, T1:]``, then :func:`pyro_ssl.baselines.perplexity`.

* ``ssl``: :class:`pyro_ssl.SSL` (particle Gibbs within stochastic EM), scored by its particle
  filter with ``eval_particles`` particles (``token_log_probs``' default filter seed); its
  per-epoch completion perplexity (``curve_particles`` particles) is the curve;
* ``hmm``: :class:`~pyro_ssl.baselines.HMM` (Baum-Welch, exact forward pass);
* ``lstm``: :class:`~pyro_ssl.baselines.LSTMLanguageModel` (early stopping on a validation part
  of the *training* prefixes; its curve is that validation perplexity);
* ``lda``: :class:`~pyro_ssl.baselines.LDABaseline` (gensim; mixture folded in on the prefix);
* ``unigram``: :class:`~pyro_ssl.baselines.UnigramLM` (deterministic, so fitted once);
* ``kn``: :class:`~pyro_ssl.baselines.KneserNey` (interpolated Kneser-Ney; deterministic).

Models with topics or states take every ``K`` in ``K_values``; stochastic models are
replicated over ``seeds`` (mean and sample sd). Models with ``top_words`` (SSL, LDA) also get
coherence (NPMI, C_v; :mod:`pyro_ssl.coherence`) on the training prefixes and topic diversity.
From the shell::

    python experiments/comparison.py --data ../shared/data/imdb/imdb_reviews_sample.csv \\
        --models ssl hmm unigram lstm lda --K 10 50 --seeds 0 1 2 --out outputs/compare
"""

from __future__ import annotations

import json
import math
import sys
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

import pyro_ssl
from pyro_ssl.baselines import HMM, KneserNey, LDABaseline, LSTMLanguageModel, UnigramLM, perplexity
from pyro_ssl.io import jsonable

__all__ = ["MODELS", "RunRecord", "ComparisonResult", "compare", "model_factories", "describe",
           "reference_texts", "main"]

#: model names accepted by :func:`compare`; the ones in ``TOPIC_MODELS`` take ``K``.
MODELS = ("ssl", "hmm", "lstm", "lda", "unigram", "kn")
TOPIC_MODELS = ("ssl", "hmm", "lda")
_STOCHASTIC = ("ssl", "hmm", "lstm", "lda")  # unigram and kn are fitted once
_LABELS = {"ssl": "SSL", "hmm": "HMM", "lstm": "LSTM LM", "lda": "LDA", "unigram": "unigram", "kn": "Kneser-Ney"}
_CURVE_KEYS = ("completion_ppl", "val_ppl")  # per-epoch history keys drawn as curves


@dataclass
class RunRecord:
    """One trained model (one ``model``, ``K`` and ``seed``) and its scores.

    ``ppl`` is the completion perplexity over ``num_tokens`` held-out tokens; ``train_seconds``
    excludes all evaluation; ``seconds_per_epoch`` is per epoch (SSL, LSTM), EM iteration (HMM)
    or pass (LDA); ``curve`` holds ``[epoch, value]`` pairs (epochs from 1) of ``curve_key``
    (``"completion_ppl"``: SSL, ``"val_ppl"``: LSTM); ``topic_quality`` holds ``c_npmi``,
    ``c_v`` and ``diversity``; ``top_words`` is ``K`` lists of 10 words; ``error`` is set
    when the run failed.
    """

    model: str
    K: int | None
    seed: int | None
    ppl: float = math.nan
    num_tokens: int = 0
    train_seconds: float = math.nan
    eval_seconds: float = math.nan
    epochs: int | None = None
    seconds_per_epoch: float | None = None
    curve: list[list[float]] | None = None
    curve_key: str | None = None
    topic_quality: dict[str, float] | None = None
    top_words: list[list[str]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def name(self) -> str:
        return _LABELS.get(self.model, self.model) + (f" K={self.K}" if self.K is not None else "")


def _mean_sd(values) -> tuple[float, float, int]:
    """``(mean, sample sd, n)`` of the finite values (``nan, nan, 0`` when none)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return math.nan, math.nan, 0
    mean = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return mean, sd, len(vals)


def _fmt(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:,.{digits}f}"


def _fmt_pm(stats: tuple[float, float, int], digits: int = 1) -> str:
    mean, sd, n = stats
    if n == 0:
        return "–"
    return f"{_fmt(mean, digits)} ± {_fmt(sd, digits)}" if n > 1 else _fmt(mean, digits)


@dataclass
class ComparisonResult:
    """All runs of a comparison and the settings they share.

    Attributes:
        runs: one :class:`RunRecord` per trained model.
        settings: split and evaluation settings (documents, ``V``, ``T1``, ``T2``, held-out
            tokens, particles, seeds, model options).
        models: the fitted models by ``(model, K, seed)`` (not serialised; for plots).
    """

    runs: list[RunRecord] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    models: dict[tuple, Any] = field(default_factory=dict, repr=False)

    def groups(self) -> list[tuple[str, int | None, list[RunRecord]]]:
        """Runs grouped by ``(model, K)`` in the order they were run."""
        out: dict[tuple, list[RunRecord]] = {}
        for r in self.runs:
            out.setdefault((r.model, r.K), []).append(r)
        return [(m, K, rs) for (m, K), rs in out.items()]

    def summary(self) -> list[dict[str, Any]]:
        """One row per ``(model, K)``: perplexity, timing and topic quality as mean, sd, n."""
        rows = []
        for model, K, rs in self.groups():
            ok = [r for r in rs if r.error is None]
            ppl = _mean_sd(r.ppl for r in ok)
            row = {"model": model, "K": K, "name": rs[0].name, "ppl_mean": ppl[0], "ppl_sd": ppl[1],
                   "n": ppl[2], "failed": len(rs) - len(ok), "seeds": [r.seed for r in ok]}
            for key in ("epochs", "seconds_per_epoch", "train_seconds", "eval_seconds"):
                row[key] = _mean_sd(getattr(r, key) for r in ok)[0]
            for q in ("c_npmi", "c_v", "diversity"):
                row[f"{q}_mean"], row[f"{q}_sd"], row[f"{q}_n"] = _mean_sd((r.topic_quality or {}).get(q) for r in ok)
            rows.append(row)
        return rows

    def to_markdown(self) -> str:
        """A settings line, then a table: completion perplexity (mean ± sd over seeds), timing,
        topic quality."""
        s, lines = self.settings, []
        if s:
            lines += [f"Document completion on {s.get('num_docs')} documents: first T1={s.get('T1')} tokens observed "
                      f"(training text), next T2={s.get('T2')} scored ({s.get('heldout_tokens')} tokens); "
                      f"V={s.get('V')}; SSL scored by the particle filter with {s.get('eval_particles')} particles. "
                      f"Mean ± sd over seeds {s.get('seeds')} (unigram is deterministic).", ""]
        lines.append("| model | K | completion ppl | seeds | epochs | s / epoch | train s | NPMI | C_v | diversity |")
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for row in self.summary():
            n = row["n"] if not row["failed"] else f"{row['n']} ({row['failed']} failed)"
            spe = row["seconds_per_epoch"]
            q = {k: (row[f"{k}_mean"], row[f"{k}_sd"], row[f"{k}_n"]) for k in ("c_npmi", "c_v", "diversity")}
            cells = [_LABELS.get(row["model"], row["model"]), row["K"] if row["K"] is not None else "–",
                     _fmt_pm((row["ppl_mean"], row["ppl_sd"], row["n"])), n, _fmt(row["epochs"], 0),
                     _fmt(spe, 2 if math.isfinite(spe) and spe < 10 else 1), _fmt(row["train_seconds"], 1),
                     _fmt_pm(q["c_npmi"], 3), _fmt_pm(q["c_v"], 3), _fmt_pm(q["diversity"], 2)]
            lines.append("| " + " | ".join(map(str, cells)) + " |")
        lines += ["", "s / epoch: training seconds per epoch (SSL, LSTM), EM iteration (HMM) or pass (LDA), "
                  "evaluation excluded. NPMI and C_v: gensim CoherenceModel on the training prefixes, top 10 "
                  "words per topic without `<unk>`; diversity: unique share of the top 25 words."]
        errors = [r for r in self.runs if r.error]
        if errors:
            lines += ["", "Failed runs: " + "; ".join(f"{r.name} seed {r.seed}: {r.error.splitlines()[-1]}"
                                                      for r in errors)]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        return jsonable({"settings": self.settings, "summary": self.summary(),
                          "runs": [asdict(r) for r in self.runs]})

    def to_json(self, path) -> Path:
        """Write settings, the summary rows and every run (curves, top words) as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def from_json(cls, path) -> "ComparisonResult":
        """Read a result written by :meth:`to_json` (without the fitted models)."""
        data = json.loads(Path(path).read_text())
        runs = []
        for r in data["runs"]:
            for k in ("ppl", "train_seconds", "eval_seconds"):
                r[k] = math.nan if r.get(k) is None else r[k]
            runs.append(RunRecord(**r))
        return cls(runs=runs, settings=data.get("settings", {}))

    def plot(self, path, *, title: str | None = None) -> Path:
        """Perplexity per epoch of every model with a curve (mean over seeds, band = ±1 sd), and
        the final completion perplexity of the others as horizontal lines. The LSTM curve
        (dashed) is validation perplexity on training prefixes; its final score is dotted."""
        from pyro_ssl import plots  # noqa: F401  (selects the Agg backend)
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        ax = Figure(figsize=(8.5, 4.8)).subplots()
        values = []
        for i, (_, _, rs) in enumerate(self.groups()):
            ok = [r for r in rs if r.error is None]
            if ok:
                values += _plot_group(ax, ok, f"C{i % 10}")
        finite = [v for v in values if math.isfinite(v) and v > 0]
        if not finite:
            ax.text(0.5, 0.5, "no perplexity recorded", ha="center", va="center", transform=ax.transAxes)
        else:
            if max(finite) / min(finite) > 5:
                ax.set_yscale("log")
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="epoch", ylabel="perplexity")
        ax.grid(alpha=0.3)
        s = self.settings
        ax.set_title(title or (f"document completion (T1={s.get('T1')}, T2={s.get('T2')}, {s.get('num_docs')} docs)"
                               if s else "document completion"), fontsize=10)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        ax.figure.savefig(path, dpi=110, bbox_inches="tight", format="png")
        return path

    def save(self, out_dir, *, plot_name: str = "perplexity.png") -> dict[str, Path]:
        """Write ``results.md``, ``results.json`` and the plot into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.md").write_text(self.to_markdown())
        return {"markdown": out / "results.md", "json": self.to_json(out / "results.json"),
                "plot": self.plot(out / plot_name)}


def _plot_group(ax, runs: list[RunRecord], color: str) -> list[float]:
    """Draw one ``(model, K)`` group's mean curve and/or final line; return the plotted values."""
    name, key, values = runs[0].name, runs[0].curve_key, []
    curves = [r.curve for r in runs if r.curve]
    by_epoch: dict[float, list[float]] = {}
    for e, v in (p for c in curves for p in c):
        if v is not None and math.isfinite(v):
            by_epoch.setdefault(e, []).append(v)
    if by_epoch:
        xs = sorted(by_epoch)
        ys, sds, _ = zip(*(_mean_sd(by_epoch[x]) for x in xs))
        ax.plot(xs, ys, "--" if key == "val_ppl" else "-", marker="o", ms=3, color=color,
                label=name + (" (validation ppl)" if key == "val_ppl" else ""))
        if len(curves) > 1:
            ax.fill_between(xs, [m - s for m, s in zip(ys, sds)], [m + s for m, s in zip(ys, sds)],
                            color=color, alpha=0.15, lw=0)
        values += ys
        if key == "completion_ppl":  # the curve is already the completion score
            return values
    mean, _, n = _mean_sd(r.ppl for r in runs)
    if n:
        ax.axhline(mean, color=color, ls=":" if curves else "-.", lw=1.3,
                   label=f"{name} (completion{', final' if curves else ''})")
        values.append(mean)
    return values


# ---------------------------------------------------------------------------- models
def model_factories(*, ssl_epochs: int, eval_particles: int, vocabulary: list[str] | None = None,
                    options: dict[str, dict] | None = None) -> dict[str, Callable[[Any, Any], Any]]:
    """``name -> factory(K, seed)`` returning an unfitted language model (a
    :class:`~pyro_ssl.baselines.LanguageModel`); ``K`` / ``seed`` are ``None`` where unused.

    ``options`` holds extra constructor arguments per name (``K`` and ``seed`` are set here;
    LDA gets ``vocabulary``, the shared ``itos``).
    """
    opt = {m: dict((options or {}).get(m) or {}) for m in MODELS}
    lstm = {"hidden_size": 64, "dropout": 0.2, **opt["lstm"]}
    return {
        "ssl": lambda K, seed: pyro_ssl.SSL(K=K, seed=seed, epochs=ssl_epochs, eval_particles=eval_particles,
                                            **opt["ssl"]),
        "hmm": lambda K, seed: HMM(K, seed=seed, **opt["hmm"]),
        "lstm": lambda K, seed: LSTMLanguageModel(seed=seed, **lstm),
        "lda": lambda K, seed: LDABaseline(K, seed=seed, vocabulary=vocabulary, **opt["lda"]),
        "unigram": lambda K, seed: UnigramLM(**opt["unigram"]),
        "kn": lambda K, seed: KneserNey(**opt["kn"]),
    }


def describe(model, rec: RunRecord) -> None:
    """Fill ``rec``'s per-model extras from common attributes of a fitted ``model``.

    Reads ``history`` (a list of per-epoch dicts with ``seconds``, ``eval_seconds`` and a
    curve key, or of floats), ``passes``, ``best_epoch``, ``converged``, ``get_params()`` and
    ``top_words(30)`` where present. ``rec.train_seconds`` must hold the fit's wall time; the
    curve's evaluation time is subtracted from it.
    """
    hist = list(getattr(model, "history", None) or [])
    entries = [e for e in hist if isinstance(e, dict)]
    curve_eval = sum(e.get("eval_seconds", 0.0) for e in entries)
    rec.train_seconds -= curve_eval
    rec.epochs = len(hist) or getattr(model, "passes", None)
    if rec.epochs:
        secs = [e["seconds"] for e in entries if "seconds" in e]
        rec.seconds_per_epoch = sum(secs) / len(secs) if secs else rec.train_seconds / rec.epochs
    for key in _CURVE_KEYS:
        points = [[i, e[key]] for i, e in enumerate(entries, 1) if key in e]
        if points:
            rec.curve, rec.curve_key = points, key
            rec.extra["curve_eval_seconds"] = curve_eval
            break
    if entries and "log_joint_per_token" in entries[-1]:
        rec.extra["log_joint_per_token"] = entries[-1]["log_joint_per_token"]
    best = getattr(model, "best_epoch", None)
    if best is not None and best >= 0:  # None / -1: no early stopping happened
        # counted from 1, like the curve: the LSTM LM's is an index, the SSL's an epoch number already
        rec.extra["best_epoch"] = int(best) + (0 if getattr(model, "name", None) == "ssl" else 1)
    if hasattr(model, "converged"):
        rec.extra["converged"] = bool(model.converged)
    if hasattr(model, "get_params"):
        rec.extra["params"] = jsonable(model.get_params())
    if hasattr(model, "top_words"):
        rec.top_words = [[str(w) for w in ws] for ws in model.top_words(30)]


# ---------------------------------------------------------------------------- helpers
def reference_texts(split) -> list[list[str]]:
    """The coherence reference text: the training prefixes decoded with the shared vocabulary
    (ids as strings when the corpus has none); ``D`` lists of ``T1`` words."""
    itos = split.train.vocab.itos if split.train.vocab is not None else None
    return [[itos[i] if itos else str(i) for i in d] for d in split.train.tolist()]


def _topic_quality(top_words: list[list[str]], texts: list[list[str]]) -> dict[str, float]:
    from pyro_ssl.coherence import coherence, topic_diversity

    return {"c_npmi": coherence(top_words, texts, "c_npmi", topn=10)["mean"],
            "c_v": coherence(top_words, texts, "c_v", topn=10)["mean"],
            "diversity": topic_diversity(top_words, topn=25)}


def _log(progress: bool, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


def _run_line(rec: RunRecord) -> str:
    if rec.error is not None:
        return f"    FAILED: {rec.error}"
    msg = f"    ppl {_fmt(rec.ppl, 2)}  train {_fmt(rec.train_seconds, 1)} s"
    if rec.seconds_per_epoch is not None:
        msg += f" ({_fmt(rec.seconds_per_epoch, 2)} s/epoch)"
    if rec.topic_quality:
        msg += "  NPMI {c_npmi:.3f}  C_v {c_v:.3f}  div {diversity:.2f}".format(**rec.topic_quality)
    return msg


def _fit_and_score(model, rec: RunRecord, split, fit_kw: dict):
    """Fit ``model`` on ``split.train`` and score the continuations of ``split.eval_tokens (D, T)``
    after ``T1`` by ``completion_log_likelihood -> (D,)``, summed over ``rec.num_tokens``."""
    t0 = time.perf_counter()
    model.fit(split.train, vocab_size=int(split.train.V), **fit_kw)
    t1 = time.perf_counter()
    ll = model.completion_log_likelihood(split.eval_tokens, split.eval_lengths, int(split.T1))
    rec.ppl, rec.eval_seconds = perplexity(float(ll.sum()), rec.num_tokens), time.perf_counter() - t1
    rec.train_seconds = t1 - t0
    describe(model, rec)
    return model


def _checked(models, K_values, seeds, on_error: str) -> tuple[list[str], list[int], list[int]]:
    """Validate :func:`compare`'s choices; return lower-cased models and integer ``K``s and seeds."""
    models = [m.lower() for m in models]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {MODELS}")
    if on_error not in ("warn", "raise"):
        raise ValueError("on_error must be 'warn' or 'raise'")
    seeds, K_values = [int(s) for s in seeds], [int(k) for k in K_values]
    if not seeds:
        raise ValueError("seeds must not be empty")
    if any(m in TOPIC_MODELS for m in models) and not K_values:
        raise ValueError("K_values must not be empty for ssl, hmm or lda")
    return models, K_values, seeds


def _plan(models, K_values, seeds) -> list[tuple[str, int | None, int | None]]:
    """``(model, K, seed)`` of every run: ``K`` for topic models, seeds for stochastic ones."""
    return [(m, K, seed) for m in models for K in (K_values if m in TOPIC_MODELS else [None])
            for seed in (seeds if m in _STOCHASTIC else [None])]


# ---------------------------------------------------------------------------- entry point
def compare(split, models=("ssl", "unigram"), K_values=(10, 50, 100), seeds=(0, 1, 2), ssl_epochs: int = 5,
            eval_particles: int = 1000, ssl_kwargs: dict | None = None, lstm_kwargs: dict | None = None,
            progress: bool = True, out_dir=None, *, curve_particles: int | None = 100, eval_every: int = 1,
            hmm_kwargs: dict | None = None, lda_kwargs: dict | None = None, unigram_kwargs: dict | None = None,
            topic_quality: bool = True, keep_models: bool = True, on_error: str = "warn") -> ComparisonResult:
    """Train the chosen models on ``split.train`` and score completion perplexity.

    Args:
        split: a :class:`pyro_ssl.data.CompletionSplit` (``train``: ``D`` prefixes of ``T1``
            tokens; ``eval_tokens (D, T)``, ``eval_lengths (D,)``).
        models: names from :data:`MODELS`, run in this order.
        K_values: topics / states for ``ssl``, ``hmm`` and ``lda``.
        seeds: training seeds of every stochastic model (the SSL's final filter seed is fixed).
        ssl_epochs: stochastic-EM epochs of the SSL.
        eval_particles: particle-filter particles of the SSL's final completion score.
        ssl_kwargs, lstm_kwargs, hmm_kwargs, lda_kwargs, unigram_kwargs: extra constructor
            arguments (see :func:`model_factories`).
        progress: progress bars and one line per run on stderr.
        out_dir: if given, ``results.md``, ``results.json`` and ``perplexity.png`` are
            rewritten there after every run, so an interrupted comparison keeps what it did.
        curve_particles: particles of the SSL's per-epoch curve (``None`` = ``eval_particles``).
        eval_every: the SSL's curve is scored every this many epochs (0 = no curve).
        topic_quality: coherence (NPMI, C_v) and diversity for models with topics (SSL, LDA).
        keep_models: keep the fitted models in ``result.models``.
        on_error: ``"warn"`` records a failed run (``RunRecord.error``) and goes on; ``"raise"``.
    """
    models, K_values, seeds = _checked(models, K_values, seeds, on_error)
    curve_particles = int(curve_particles or eval_particles)
    options = {"ssl": dict(ssl_kwargs or {}), "lstm": dict(lstm_kwargs or {}), "hmm": dict(hmm_kwargs or {}),
               "lda": dict(lda_kwargs or {}), "unigram": dict(unigram_kwargs or {}), "kn": {}}

    train, V, T1 = split.train, int(split.train.V), int(split.T1)
    tokens, lengths = split.eval_tokens, split.eval_lengths
    held = int((lengths - T1).clamp_min(0).sum())
    texts = reference_texts(split) if topic_quality else None
    factories = model_factories(ssl_epochs=ssl_epochs, eval_particles=eval_particles, options=options,
                                vocabulary=list(train.vocab.itos) if train.vocab is not None else None)
    fit_extras = {"ssl": dict(eval_data=(tokens, lengths, T1) if eval_every else None,
                              eval_every=max(int(eval_every), 1), eval_particles=curve_particles, progress=progress)}
    result = ComparisonResult(settings=jsonable({
        "num_docs": len(train), "V": V, "T1": T1, "T2": int(split.T2), "train_tokens": int(train.num_tokens),
        "heldout_tokens": held, "models": models, "K_values": K_values, "seeds": seeds,
        "ssl_epochs": int(ssl_epochs), "eval_particles": int(eval_particles), "curve_particles": curve_particles,
        "eval_every": int(eval_every), **{f"{m}_kwargs": kw for m, kw in options.items()},
        "torch_threads": torch.get_num_threads()}))

    plan = _plan(models, K_values, seeds)
    _log(progress, f"[compare] {len(plan)} runs on {len(train)} docs (V={V}, T1={T1}, T2={split.T2}, "
                   f"{held} held-out tokens)")
    for i, (m, K, seed) in enumerate(plan, 1):
        rec = RunRecord(model=m, K=K, seed=seed, num_tokens=held)
        _log(progress, f"[compare {i}/{len(plan)}] {rec.name}" + (f" seed={seed}" if seed is not None else ""))
        try:
            model = _fit_and_score(factories[m](K, seed), rec, split, fit_extras.get(m, {}))
            if texts is not None and rec.top_words:
                rec.topic_quality = _topic_quality(rec.top_words, texts)
            rec.top_words = [ws[:10] for ws in rec.top_words] if rec.top_words else None
            if keep_models:
                result.models[(m, K, seed)] = model
        except Exception as exc:  # noqa: BLE001 - a long comparison keeps going
            if on_error == "raise":
                raise
            rec.error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            warnings.warn(f"{rec.name} seed {seed} failed: {rec.error}", RuntimeWarning, stacklevel=2)
        result.runs.append(rec)
        _log(progress, _run_line(rec))
        if out_dir is not None:
            result.save(out_dir)
    return result


# ---------------------------------------------------------------------------- CLI
def main(argv=None) -> int:
    import argparse

    from pyro_ssl.data import completion_split, load_corpus

    p = argparse.ArgumentParser(
        prog="python experiments/comparison.py",
        description="Train the SSL and baselines on one document-completion split; write results.md, "
                    "results.json and perplexity.png.")
    p.add_argument("--data", required=True, help="any layout pyro_ssl.data.load_corpus reads (IMDB CSV, aclImdb...)")
    p.add_argument("--models", nargs="+", default=["ssl", "hmm", "unigram", "lstm", "lda"], choices=MODELS)
    p.add_argument("--K", nargs="+", type=int, default=[10, 50, 100], help="topics / states (default 10 50 100)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="replicate seeds (default 0 1 2)")
    p.add_argument("--out", default="outputs/compare", help="output folder (default outputs/compare)")
    p.add_argument("--vocab-size", type=int, default=5000, help="vocabulary size incl. <unk> (default 5000)")
    p.add_argument("--docs", type=int, default=200, help="documents in the completion set (default 200)")
    p.add_argument("--T1", type=int, default=100, help="observed prefix tokens (default 100)")
    p.add_argument("--T2", type=int, default=70, help="held-out continuation tokens (default 70)")
    p.add_argument("--split-seed", type=int, default=0, help="seed choosing the documents (default 0)")
    p.add_argument("--epochs", type=int, default=5, help="SSL epochs (default 5)")
    p.add_argument("--particles", type=int, default=10, help="SSL E-step particles P (default 10)")
    p.add_argument("--eval-particles", type=int, default=1000, help="final filter particles (default 1000)")
    p.add_argument("--curve-particles", type=int, default=100, help="per-epoch filter particles (default 100)")
    p.add_argument("--preset", default=None, help="SSL preset (e.g. 'seed')")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    corpus = load_corpus(args.data, vocab_size=args.vocab_size)
    split = completion_split(corpus, T1=args.T1, T2=args.T2, num_docs=args.docs, seed=args.split_seed)
    ssl_kwargs = {"num_particles": args.particles, **({"preset": args.preset} if args.preset else {})}
    res = compare(split, args.models, K_values=args.K, seeds=args.seeds, ssl_epochs=args.epochs,
                  eval_particles=args.eval_particles, curve_particles=args.curve_particles,
                  ssl_kwargs=ssl_kwargs, progress=not args.quiet, out_dir=args.out)
    print(res.to_markdown())
    print(f"wrote {Path(args.out) / 'results.md'}, results.json, perplexity.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
