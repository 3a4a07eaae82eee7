"""One comparison harness: the SSL against the baselines on the same completion split (SPEC 4).

:func:`compare` trains every chosen model on ``split.train`` (the observed prefixes: the same
tokens, vocabulary and ``<unk>`` handling for all) and scores the document-completion
perplexity of the held-out continuations ``split.eval_tokens[:, T1:]`` given the prefixes:

* ``ssl``: :class:`pyro_ssl.SSL` fitted by particle Gibbs within stochastic EM, scored by the
  particle filter (:meth:`SSL.completion_perplexity`, ``eval_particles`` particles); its
  per-epoch completion perplexity is recorded with ``curve_particles`` particles;
* ``hmm``: :class:`~pyro_ssl.baselines.HMM` (Baum-Welch), scored exactly by the forward pass;
* ``lstm``: :class:`~pyro_ssl.baselines.LSTMLanguageModel` (early stopping on a validation
  part of the *training* prefixes; its per-epoch curve is that validation perplexity);
* ``lda``: :class:`~pyro_ssl.baselines.LDABaseline` (gensim; mixture folded in on the prefix);
* ``unigram``: :class:`~pyro_ssl.baselines.UnigramLM` (deterministic, so fitted once).

Models with topics or states take every ``K`` in ``K_values``; every stochastic model is
replicated over ``seeds`` and reported as mean and sample standard deviation. SSL and LDA
topics also get coherence (gensim NPMI and C_v, :mod:`pyro_ssl.coherence`) on one reference
text for both (the training prefixes decoded with the shared vocabulary) and topic diversity.

The result (:class:`ComparisonResult`) renders a Markdown table, writes JSON and draws one plot.
From the shell::

    python -m pyro_ssl.comparison --data ../shared/data/imdb/imdb_reviews_sample.csv \\
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
from typing import Any

import torch

__all__ = ["MODELS", "RunRecord", "ComparisonResult", "compare", "reference_texts", "main"]

#: model names accepted by :func:`compare`; the ones in ``TOPIC_MODELS`` take ``K``.
MODELS = ("ssl", "hmm", "lstm", "lda", "unigram")
TOPIC_MODELS = ("ssl", "hmm", "lda")
_STOCHASTIC = ("ssl", "hmm", "lstm", "lda")
_LABELS = {"ssl": "SSL", "hmm": "HMM", "lstm": "LSTM LM", "lda": "LDA", "unigram": "unigram"}


@dataclass
class RunRecord:
    """One trained model (one ``model``, ``K`` and ``seed``) and its scores.

    ``ppl`` is the completion perplexity; ``train_seconds`` excludes evaluation;
    ``seconds_per_epoch`` is training seconds per epoch (SSL, LSTM) or per EM iteration (HMM);
    ``curve`` holds ``[epoch, value]`` pairs of ``curve_key`` (``"completion_ppl"`` for the SSL,
    ``"val_ppl"`` for the LSTM); ``topic_quality`` holds ``c_npmi``, ``c_v`` and
    ``diversity`` for topic models with words; ``error`` is set when the run failed.
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
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return math.nan, math.nan, 0
    mean = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return mean, sd, len(vals)


def _fmt(x: float | None, digits: int = 1) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:,.{digits}f}"


def _fmt_pm(mean: float, sd: float, n: int, digits: int = 1) -> str:
    if n == 0:
        return "–"
    return f"{_fmt(mean, digits)} ± {_fmt(sd, digits)}" if n > 1 else _fmt(mean, digits)


def _jsonable(x):
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        return _jsonable(x.tolist())
    return x


@dataclass
class ComparisonResult:
    """All runs of a comparison and the settings they share.

    Attributes:
        runs: one :class:`RunRecord` per trained model.
        settings: the split and evaluation settings (documents, ``V``, ``T1``, ``T2``,
            held-out tokens, particles, seeds, model options).
        models: the fitted model objects by ``(model, K, seed)`` (not serialised; kept for
            plots such as topics and ribbons).
    """

    runs: list[RunRecord] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    models: dict[tuple, Any] = field(default_factory=dict, repr=False)

    # ---------------------------------------------------------------- summaries
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
            row = {
                "model": model, "K": K, "name": rs[0].name,
                "ppl_mean": ppl[0], "ppl_sd": ppl[1], "n": ppl[2], "failed": len(rs) - len(ok),
                "seeds": [r.seed for r in ok],
                "epochs": _mean_sd(r.epochs for r in ok if r.epochs is not None)[0],
                "seconds_per_epoch": _mean_sd(r.seconds_per_epoch for r in ok)[0],
                "train_seconds": _mean_sd(r.train_seconds for r in ok)[0],
                "eval_seconds": _mean_sd(r.eval_seconds for r in ok)[0],
            }
            for q in ("c_npmi", "c_v", "diversity"):
                m, sd, n = _mean_sd((r.topic_quality or {}).get(q) for r in ok)
                row[f"{q}_mean"], row[f"{q}_sd"], row[f"{q}_n"] = m, sd, n
            rows.append(row)
        return rows

    def to_markdown(self) -> str:
        """A Markdown table (completion perplexity mean ± sd over seeds, timing, topic quality)
        preceded by a line of settings."""
        s = self.settings
        lines = []
        if s:
            lines.append(
                f"Document completion on {s.get('num_docs')} documents: first T1={s.get('T1')} tokens observed "
                f"(training text), next T2={s.get('T2')} scored ({s.get('heldout_tokens')} tokens); "
                f"V={s.get('V')}; SSL scored by the particle filter with {s.get('eval_particles')} particles. "
                f"Mean ± sd over seeds {s.get('seeds')} (unigram is deterministic)."
            )
            lines.append("")
        lines.append("| model | K | completion ppl | seeds | epochs | s / epoch | train s | NPMI | C_v | diversity |")
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for row in self.summary():
            n = row["n"] if not row["failed"] else f"{row['n']} ({row['failed']} failed)"
            spe = row["seconds_per_epoch"]
            lines.append(
                "| {name} | {K} | {ppl} | {n} | {ep} | {spe} | {tr} | {npmi} | {cv} | {div} |".format(
                    name=_LABELS.get(row["model"], row["model"]),
                    K=row["K"] if row["K"] is not None else "–",
                    ppl=_fmt_pm(row["ppl_mean"], row["ppl_sd"], row["n"]),
                    n=n,
                    ep=_fmt(row["epochs"], 0),
                    spe=_fmt(spe, 2 if spe is not None and math.isfinite(spe) and spe < 10 else 1),
                    tr=_fmt(row["train_seconds"], 1),
                    npmi=_fmt_pm(row["c_npmi_mean"], row["c_npmi_sd"], row["c_npmi_n"], 3),
                    cv=_fmt_pm(row["c_v_mean"], row["c_v_sd"], row["c_v_n"], 3),
                    div=_fmt_pm(row["diversity_mean"], row["diversity_sd"], row["diversity_n"], 2),
                )
            )
        lines.append("")
        lines.append(
            "s / epoch: training seconds per epoch (SSL, LSTM) or per EM iteration (HMM), evaluation excluded. "
            "NPMI and C_v: gensim CoherenceModel on the training prefixes, top 10 words per topic without "
            "`<unk>`; diversity: unique share of the top 25 words."
        )
        errors = [r for r in self.runs if r.error]
        if errors:
            lines.append("")
            lines.append("Failed runs: " + "; ".join(f"{r.name} seed {r.seed}: {r.error.splitlines()[-1]}"
                                                     for r in errors))
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        return _jsonable({"settings": self.settings, "summary": self.summary(),
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

        def num(x):
            return math.nan if x is None else x

        runs = []
        for r in data["runs"]:
            for k in ("ppl", "train_seconds", "eval_seconds"):
                r[k] = num(r.get(k))
            runs.append(RunRecord(**r))
        return cls(runs=runs, settings=data.get("settings", {}))

    # ---------------------------------------------------------------- plot
    def plot(self, path, *, title: str | None = None) -> Path:
        """Perplexity per epoch for every model with curves (mean over seeds, band = ±1 sd);
        the final completion perplexity of every other model as a horizontal line.

        SSL curves are completion perplexity; the LSTM curve (dashed) is its validation
        perplexity on held-out *training* prefixes, its final completion perplexity a dotted line.
        """
        from . import plots  # selects the Agg backend  # noqa: F401
        from matplotlib.figure import Figure

        fig = Figure(figsize=(8.5, 4.8))
        ax = fig.subplots()
        colors = [f"C{i}" for i in range(10)]
        values = []
        for i, (model, K, rs) in enumerate(self.groups()):
            ok = [r for r in rs if r.error is None]
            if not ok:
                continue
            color = colors[i % 10]
            name = ok[0].name
            curves = [r.curve for r in ok if r.curve]
            if curves:
                by_epoch: dict[float, list[float]] = {}
                for c in curves:
                    for e, v in c:
                        if v is not None and math.isfinite(v):
                            by_epoch.setdefault(e, []).append(v)
                xs = sorted(by_epoch)
                if xs:
                    stats = [_mean_sd(by_epoch[x]) for x in xs]
                    ys = [m for m, _, _ in stats]
                    sds = [sd for _, sd, _ in stats]
                    key = ok[0].curve_key
                    label = name + (" (validation ppl)" if key == "val_ppl" else "")
                    ls = "--" if key == "val_ppl" else "-"
                    ax.plot(xs, ys, ls, marker="o", ms=3, color=color, label=label)
                    if len(curves) > 1:
                        ax.fill_between(xs, [m - s for m, s in zip(ys, sds)], [m + s for m, s in zip(ys, sds)],
                                        color=color, alpha=0.15, lw=0)
                    values += ys
                    if key == "completion_ppl":
                        continue
            m, _, n = _mean_sd(r.ppl for r in ok)
            if n:
                ax.axhline(m, color=color, ls=":" if curves else "-.", lw=1.3,
                           label=f"{name} (completion{', final' if curves else ''})")
                values.append(m)
        finite = [v for v in values if math.isfinite(v) and v > 0]
        if not finite:
            ax.text(0.5, 0.5, "no perplexity recorded", ha="center", va="center", transform=ax.transAxes)
        elif max(finite) / min(finite) > 5:
            ax.set_yscale("log")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("perplexity")
        ax.grid(alpha=0.3)
        if finite:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        s = self.settings
        ax.set_title(title or (f"document completion (T1={s.get('T1')}, T2={s.get('T2')}, "
                               f"{s.get('num_docs')} docs)" if s else "document completion"), fontsize=10)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight", format="png")
        return path

    def save(self, out_dir, *, plot_name: str = "perplexity.png") -> dict[str, Path]:
        """Write ``results.md``, ``results.json`` and the plot into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        md = out / "results.md"
        md.write_text(self.to_markdown())
        return {"markdown": md, "json": self.to_json(out / "results.json"), "plot": self.plot(out / plot_name)}


# ---------------------------------------------------------------------------- helpers
def reference_texts(split) -> list[list[str]]:
    """The coherence reference text: the training prefixes decoded with the shared vocabulary
    (ids as strings when the corpus has none)."""
    vocab = split.train.vocab
    docs = split.train.tolist()
    if vocab is None:
        return [[str(i) for i in d] for d in docs]
    itos = vocab.itos
    return [[itos[i] for i in d] for d in docs]


def _topic_quality(top_words, texts) -> dict[str, float]:
    from .coherence import coherence, topic_diversity

    return {
        "c_npmi": coherence(top_words, texts, "c_npmi", topn=10)["mean"],
        "c_v": coherence(top_words, texts, "c_v", topn=10)["mean"],
        "diversity": topic_diversity(top_words, topn=25),
    }


def _log(progress: bool, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- entry point
def compare(
    split,
    models=("ssl", "unigram"),
    K_values=(10, 50, 100),
    seeds=(0, 1, 2),
    ssl_epochs: int = 5,
    eval_particles: int = 1000,
    ssl_kwargs: dict | None = None,
    lstm_kwargs: dict | None = None,
    progress: bool = True,
    out_dir=None,
    *,
    curve_particles: int | None = 100,
    eval_every: int = 1,
    hmm_kwargs: dict | None = None,
    lda_kwargs: dict | None = None,
    unigram_kwargs: dict | None = None,
    topic_quality: bool = True,
    keep_models: bool = True,
    on_error: str = "warn",
) -> ComparisonResult:
    """Train the chosen models on ``split.train`` and score completion perplexity.

    Args:
        split: a :class:`pyro_ssl.data.CompletionSplit`.
        models: names from :data:`MODELS` (``"ssl"``, ``"hmm"``, ``"lstm"``, ``"lda"``,
            ``"unigram"``), run in this order.
        K_values: topics / states for ``ssl``, ``hmm`` and ``lda``.
        seeds: replicate seeds of every stochastic model (training seed; the SSL's final
            particle filter also uses it).
        ssl_epochs: stochastic-EM epochs of the SSL.
        eval_particles: particle-filter particles of the SSL's final completion perplexity.
        ssl_kwargs: extra :class:`pyro_ssl.SSL` arguments (``K`` and ``seed`` are set here).
        lstm_kwargs, hmm_kwargs, lda_kwargs, unigram_kwargs: extra constructor arguments of
            the baselines (``seed`` and ``K`` are set here; LDA gets the vocabulary).
        progress: progress bars and one line per run on stderr.
        out_dir: if given, ``results.md``, ``results.json`` and ``perplexity.png`` are
            (re)written there after every run, so an interrupted comparison keeps what it did.
        curve_particles: particles of the SSL's per-epoch completion perplexity (the curve;
            ``None`` = ``eval_particles``). When equal to ``eval_particles`` and the last
            epoch was evaluated, that evaluation is the final score (no second filter run).
        eval_every: the SSL's curve is evaluated every this many epochs (0 = no curve).
        topic_quality: compute coherence (NPMI, C_v) and diversity for SSL and LDA topics.
        keep_models: keep the fitted models in ``result.models``.
        on_error: ``"warn"`` records a failed run (``RunRecord.error``) and goes on;
            ``"raise"`` re-raises.

    Returns:
        A :class:`ComparisonResult`.
    """
    from .baselines import HMM, LDABaseline, LSTMLanguageModel, UnigramLM
    from .baselines import perplexity as bl_perplexity
    from .estimator import SSL

    models = [m.lower() for m in models]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {MODELS}")
    if on_error not in ("warn", "raise"):
        raise ValueError("on_error must be 'warn' or 'raise'")
    seeds = [int(s) for s in seeds]
    K_values = [int(k) for k in K_values]
    if not seeds:
        raise ValueError("seeds must not be empty")
    if any(m in TOPIC_MODELS for m in models) and not K_values:
        raise ValueError("K_values must not be empty for ssl, hmm or lda")
    curve_particles = int(curve_particles or eval_particles)
    ssl_kwargs, lstm_kwargs = dict(ssl_kwargs or {}), dict(lstm_kwargs or {})
    hmm_kwargs, lda_kwargs, unigram_kwargs = dict(hmm_kwargs or {}), dict(lda_kwargs or {}), dict(unigram_kwargs or {})

    train = split.train
    V = int(train.V)
    vocab = train.vocab
    docs = train.tolist()
    tokens, lengths, T1 = split.eval_tokens, split.eval_lengths, int(split.T1)
    held = int((lengths - T1).clamp_min(0).sum())
    texts = reference_texts(split) if topic_quality else None
    itos = list(vocab.itos) if vocab is not None else None

    result = ComparisonResult(settings={
        "num_docs": len(train), "V": V, "T1": T1, "T2": int(split.T2), "train_tokens": int(train.num_tokens),
        "heldout_tokens": held, "models": models, "K_values": K_values, "seeds": seeds,
        "ssl_epochs": int(ssl_epochs), "eval_particles": int(eval_particles), "curve_particles": curve_particles,
        "eval_every": int(eval_every), "ssl_kwargs": {k: str(v) if isinstance(v, torch.dtype) else v
                                                      for k, v in ssl_kwargs.items()},
        "lstm_kwargs": lstm_kwargs, "hmm_kwargs": hmm_kwargs, "lda_kwargs": lda_kwargs,
        "unigram_kwargs": unigram_kwargs, "torch_threads": torch.get_num_threads(),
    })

    def score_baseline(lm) -> tuple[float, float]:
        t0 = time.perf_counter()
        ll = lm.completion_log_likelihood(tokens, lengths, T1)
        return bl_perplexity(float(ll.sum()), held), time.perf_counter() - t0

    def run_ssl(rec: RunRecord):
        model = SSL(K=rec.K, seed=rec.seed, **ssl_kwargs)
        eval_data = (tokens, lengths, T1) if eval_every else None
        t0 = time.perf_counter()
        model.fit(train, epochs=ssl_epochs, eval_data=eval_data, eval_every=max(int(eval_every), 1),
                  eval_particles=curve_particles, progress=progress)
        wall = time.perf_counter() - t0
        h = model.history
        curve_eval = sum(e.get("eval_seconds", 0.0) for e in h)
        rec.train_seconds = wall - curve_eval
        rec.epochs = len(h)
        rec.seconds_per_epoch = sum(e["seconds"] for e in h) / max(len(h), 1)
        rec.curve = [[e["epoch"], e["completion_ppl"]] for e in h if "completion_ppl" in e]
        rec.curve_key = "completion_ppl"
        if curve_particles == eval_particles and h and "completion_ppl" in h[-1]:
            rec.ppl, rec.eval_seconds = h[-1]["completion_ppl"], h[-1]["eval_seconds"]
            rec.extra["filter_seed"] = h[-1]["epoch"]
        else:
            t1 = time.perf_counter()
            est = model.completion_perplexity(tokens, lengths, T1, num_particles=eval_particles, seeds=(rec.seed,))
            rec.ppl, rec.eval_seconds = est.mean, time.perf_counter() - t1
            rec.extra["filter_seed"] = rec.seed
        rec.extra["curve_eval_seconds"] = curve_eval
        rec.extra["log_joint_per_token"] = h[-1]["log_joint_per_token"] if h else None
        rec.extra["params"] = {k: (str(v) if not isinstance(v, (int, float, str, bool, type(None))) else v)
                               for k, v in model.get_params().items()}
        if texts is not None:
            rec.top_words = model.top_words(30)
        return model

    def run_hmm(rec: RunRecord):
        lm = HMM(rec.K, seed=rec.seed, **hmm_kwargs)
        t0 = time.perf_counter()
        lm.fit(docs, V)
        rec.train_seconds = time.perf_counter() - t0
        rec.epochs = len(lm.history)
        rec.seconds_per_epoch = rec.train_seconds / max(rec.epochs, 1)
        rec.extra["converged"] = bool(lm.converged)
        rec.ppl, rec.eval_seconds = score_baseline(lm)
        return lm

    def run_lstm(rec: RunRecord):
        kw = dict(hidden_size=64, dropout=0.2)
        kw.update(lstm_kwargs)
        lm = LSTMLanguageModel(seed=rec.seed, **kw)
        t0 = time.perf_counter()
        lm.fit(docs, V)
        rec.train_seconds = time.perf_counter() - t0
        rec.epochs = len(lm.history)
        rec.seconds_per_epoch = sum(e["seconds"] for e in lm.history) / max(rec.epochs, 1)
        rec.curve = [[e["epoch"] + 1, e["val_ppl"]] for e in lm.history]
        rec.curve_key = "val_ppl"
        rec.extra["best_epoch"] = lm.best_epoch + 1
        rec.ppl, rec.eval_seconds = score_baseline(lm)
        return lm

    def run_lda(rec: RunRecord):
        lm = LDABaseline(rec.K, seed=rec.seed, vocabulary=itos, **lda_kwargs)
        t0 = time.perf_counter()
        lm.fit(docs, V)
        rec.train_seconds = time.perf_counter() - t0
        rec.epochs = lm.passes
        rec.seconds_per_epoch = rec.train_seconds / max(lm.passes, 1)
        rec.ppl, rec.eval_seconds = score_baseline(lm)
        if texts is not None:
            rec.top_words = [[str(w) for w in ws] for ws in lm.top_words(30)]
        return lm

    def run_unigram(rec: RunRecord):
        lm = UnigramLM(**unigram_kwargs)
        t0 = time.perf_counter()
        lm.fit(docs, V)
        rec.train_seconds = time.perf_counter() - t0
        rec.ppl, rec.eval_seconds = score_baseline(lm)
        return lm

    runners = {"ssl": run_ssl, "hmm": run_hmm, "lstm": run_lstm, "lda": run_lda, "unigram": run_unigram}
    plan = []
    for m in models:
        for K in (K_values if m in TOPIC_MODELS else [None]):
            for seed in (seeds if m in _STOCHASTIC else [None]):
                plan.append((m, K, seed))
    _log(progress, f"[compare] {len(plan)} runs on {len(train)} docs (V={V}, T1={T1}, T2={split.T2}, "
                   f"{held} held-out tokens)")
    for i, (m, K, seed) in enumerate(plan, 1):
        rec = RunRecord(model=m, K=K, seed=seed, num_tokens=held)
        _log(progress, f"[compare {i}/{len(plan)}] {rec.name}" + (f" seed={seed}" if seed is not None else ""))
        try:
            fitted = runners[m](rec)
            if texts is not None and rec.top_words is not None:
                rec.topic_quality = _topic_quality(rec.top_words, texts)
                rec.top_words = [ws[:10] for ws in rec.top_words]
            if keep_models:
                result.models[(m, K, seed)] = fitted
        except Exception as exc:  # noqa: BLE001 - a long comparison keeps going
            if on_error == "raise":
                raise
            rec.error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            warnings.warn(f"{rec.name} seed {seed} failed: {rec.error}", RuntimeWarning, stacklevel=2)
        result.runs.append(rec)
        msg = f"    ppl {_fmt(rec.ppl, 2)}  train {_fmt(rec.train_seconds, 1)} s"
        if rec.seconds_per_epoch is not None:
            msg += f" ({_fmt(rec.seconds_per_epoch, 2)} s/epoch)"
        if rec.topic_quality:
            msg += "  NPMI {c_npmi:.3f}  C_v {c_v:.3f}  div {diversity:.2f}".format(**rec.topic_quality)
        _log(progress, msg if rec.error is None else f"    FAILED: {rec.error}")
        if out_dir is not None:
            result.save(out_dir)
    return result


# ---------------------------------------------------------------------------- CLI
def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m pyro_ssl.comparison",
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

    from .data import completion_split, load_corpus

    if args.threads:
        torch.set_num_threads(args.threads)
    corpus = load_corpus(args.data, vocab_size=args.vocab_size)
    split = completion_split(corpus, T1=args.T1, T2=args.T2, num_docs=args.docs, seed=args.split_seed)
    ssl_kwargs = {"num_particles": args.particles}
    if args.preset:
        ssl_kwargs["preset"] = args.preset
    res = compare(split, args.models, K_values=args.K, seeds=args.seeds, ssl_epochs=args.epochs,
                  eval_particles=args.eval_particles, curve_particles=args.curve_particles,
                  ssl_kwargs=ssl_kwargs, progress=not args.quiet, out_dir=args.out)
    print(res.to_markdown())
    print(f"wrote {Path(args.out) / 'results.md'}, results.json, perplexity.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
