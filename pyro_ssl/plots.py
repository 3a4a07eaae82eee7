"""Plots for fitted models and their diagnostics; every function saves a PNG and returns its path.

The figures are drawn with matplotlib's object-oriented API (``Figure``, never ``pyplot``), so
plotting works on machines without a display (servers, CI), never opens a window, and importing
this module leaves the caller's matplotlib backend alone. matplotlib itself is imported by the
first plot, not by ``import pyro_ssl`` (a quarter of a second every process would pay: every
command-line call, every process of ``fit(..., workers=N)``).

* :func:`plot_training_curves`: a per-epoch quantity for one or several models;
* :func:`plot_topics`: the top words of every topic as a grid;
* :func:`plot_topic_ribbon`: a document's words coloured by their assigned topic;
* :func:`plot_mixing`: update rate, ESS and distinct ancestors by position (path degeneracy);
* :func:`plot_traces`: ArviZ trace plots of several chains.

``python -m pyro_ssl.plots --demo docs/img`` fits a small model on gensim's Lee corpus and
writes every plot into ``docs/img``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

from .data import Corpus, gensim_corpus_texts
from .diagnostics import ancestors_matrix, ess_matrix, run_chains, update_rate_matrix
from .estimator import SSL

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "plot_training_curves",
    "plot_topics",
    "plot_topic_ribbon",
    "plot_mixing",
    "plot_traces",
    "topic_colors",
]

_LABELS = {
    "log_joint_per_token": "log joint per token",
    "completion_ppl": "completion perplexity",
    "heldout_log_lik": "held-out log lik per token",
    "mstep_loss": "M-step loss (per token)",
    "seconds": "seconds per epoch",
}


def _figure(**kwargs) -> Figure:
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _save(fig: Figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight", format="png")
    return path


def _max_n_locator(n: int):
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(n)


def topic_colors(K: int) -> list:
    """``K`` distinguishable RGBA colours (tab20, then hsv for more topics)."""
    import matplotlib as mpl

    if K <= 10:
        cmap = mpl.colormaps["tab10"]
        return [cmap(k) for k in range(K)]
    if K <= 20:
        cmap = mpl.colormaps["tab20"]
        return [cmap(k) for k in range(K)]
    cmap = mpl.colormaps["hsv"]
    return [cmap(k / K) for k in range(K)]


def _as_histories(histories) -> dict:
    if hasattr(histories, "history"):
        return {"model": histories.history}
    if isinstance(histories, Mapping):
        return {str(k): (v.history if hasattr(v, "history") else v) for k, v in histories.items()}
    if isinstance(histories, Sequence) and (not histories or isinstance(histories[0], Mapping)):
        return {"model": list(histories)}
    raise TypeError("histories must be a history list, an SSL, or a dict name -> history/SSL")


def plot_training_curves(histories, key: str | Sequence[str] = "log_joint_per_token", path="training_curves.png",
                         *, title: str | None = None) -> Path:
    """Per-epoch curves of ``key`` (one line per model).

    Args:
        histories: ``{name: history}`` (``history`` = ``SSL.history`` or a fitted SSL), or one
            history / SSL.
        key: the history entry to plot (``"log_joint_per_token"``, ``"completion_ppl"``,
            ``"heldout_log_lik"``, ``"mstep_loss"``, ``"seconds"``...), or several keys (one
            panel each).
        path: PNG file to write.
    """
    hs = _as_histories(histories)
    keys = [key] if isinstance(key, str) else list(key)
    fig = _figure(figsize=(5.5 * len(keys), 3.6))
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, k in zip(axes, keys):
        plotted = 0
        for name, h in hs.items():
            pts = [(e.get("epoch", i + 1), e[k]) for i, e in enumerate(h) if k in e]
            if pts:
                x, y = zip(*pts)
                ax.plot(x, y, marker="o", ms=3, label=name)
                plotted += 1
        if not plotted:
            ax.text(0.5, 0.5, f"no {k!r} recorded", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("epoch")
        ax.set_ylabel(_LABELS.get(k, k))
        ax.set_title(_LABELS.get(k, k), fontsize=10)
        ax.grid(alpha=0.3)
        if plotted:
            ax.legend(fontsize=8)  # also for one model: its name is the label
    if title:
        fig.suptitle(title)
    fig.tight_layout()  # room for every panel's y label next to its neighbour's ticks
    return _save(fig, path)


def plot_topics(top_words: Sequence[Sequence[str]], path="topics.png", weights=None, *, ncols: int = 5,
                topic_ids: Sequence[int] | None = None, title: str | None = None, K: int | None = None) -> Path:
    """A grid with one panel per topic listing its top words (bars when ``weights`` given).

    Args:
        top_words: per topic, its words in order (e.g. ``ssl.top_words(10)``).
        weights: optional matching probabilities per topic (e.g. from ``ssl.phi``).
        ncols: panels per row.
        topic_ids: labels of the panels (default ``0, 1, ...``), e.g. ``ssl.topic_order()[:10]``.
        K: number of topics of the colour scale (default ``max(topic_ids) + 1``): a topic has
            the same colour here as in :func:`plot_topic_ribbon` and the report.
    """
    n_panels = len(top_words)
    if n_panels == 0:
        raise ValueError("top_words is empty")
    ids = list(topic_ids) if topic_ids is not None else list(range(n_panels))
    if len(ids) != n_panels:
        raise ValueError(f"{len(ids)} topic_ids for {n_panels} topics")
    ncols = max(1, min(ncols, n_panels))
    nrows = -(-n_panels // ncols)
    n = max(len(w) for w in top_words)
    fig = _figure(figsize=(2.4 * ncols, 0.22 * n * nrows + 0.6 * nrows + 0.4))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    palette = topic_colors(K or max(ids) + 1)
    colors = [palette[k] for k in ids]  # by topic id, not by panel
    for i, ax in enumerate(axes.flat):
        if i >= n_panels:
            ax.set_axis_off()
            continue
        words = list(top_words[i])
        y = np.arange(len(words))[::-1]
        if weights is not None:
            w = np.asarray(weights[i], dtype=float)[: len(words)]
            ax.barh(y, w, color=colors[i], alpha=0.8)
            for yi, word in zip(y, words):
                ax.text(0, yi, " " + word, va="center", ha="left", fontsize=8)
            ax.set_xlim(0, float(np.max(w)) * 1.05 if w.size else 1)
            ax.xaxis.set_major_locator(_max_n_locator(3))  # more tick labels overlap in a narrow panel
            ax.tick_params(labelsize=6)
            ax.set_yticks([])
        else:
            for yi, word in zip(y, words):
                ax.text(0.02, yi, word, va="center", ha="left", fontsize=8)
            ax.set_xlim(0, 1)
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_ylim(-0.7, n - 0.3)
        # The topic's colour, darkened: pale tab20 colours are unreadable as text on white.
        ax.set_title(f"topic {ids[i]}", fontsize=9, color=tuple(0.6 * c for c in colors[i][:3]))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_topic_ribbon(words: Sequence[str], topics: Sequence[int], path="topic_ribbon.png", *, K: int | None = None,
                      words_per_line: int = 12, title: str | None = None) -> Path:
    """A document's words in reading order, each on a box coloured by its topic.

    Args:
        words: the document's tokens.
        topics: the topic of every token (e.g. ``ssl.predict([doc])[0]``).
        K: number of topics (colour scale; default ``max(topics) + 1``).
        words_per_line: tokens per line of the ribbon.
    """
    if len(words) != len(topics):
        raise ValueError(f"{len(words)} words but {len(topics)} topics")
    if not words:
        raise ValueError("empty document")
    topics = [int(t) for t in topics]
    K = K or max(topics) + 1
    colors = topic_colors(K)
    lines = -(-len(words) // words_per_line)
    fig = _figure(figsize=(1.0 * words_per_line, 0.45 * lines + 0.9))
    ax = fig.subplots()
    for i, (w, k) in enumerate(zip(words, topics)):
        r, c = divmod(i, words_per_line)
        ax.text(c + 0.5, -r, w, ha="center", va="center", fontsize=8,
                bbox=dict(boxstyle="round,pad=0.25", fc=colors[k], alpha=0.55, ec="none"))
    ax.set_xlim(0, words_per_line)
    ax.set_ylim(-lines + 0.4, 0.6)
    ax.set_axis_off()
    used = sorted(set(topics))
    from matplotlib.patches import Patch

    handles = [Patch(color=colors[k], alpha=0.55, label=f"topic {k}") for k in used]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(used), 10),
              fontsize=7, frameon=False)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def plot_mixing(history, path="mixing.png", *, epochs: Sequence[int] | None = None, title: str | None = None) -> Path:
    """Update rate, ESS and distinct ancestors by position for a few epochs of a fit.

    Args:
        history: ``SSL.history`` (or a fitted SSL).
        epochs: indices into the history to draw (default: first, middle, last).
    """
    h = history.history if hasattr(history, "history") else history
    if not h:
        raise ValueError("empty history")
    mats = [("update rate", "topic changed in the sweep (share of documents)", update_rate_matrix(h)),
            ("ESS", "effective sample size of the particle weights", ess_matrix(h)),
            ("distinct ancestors", "distinct ancestors of the final particles", ancestors_matrix(h))]
    if epochs is None:
        epochs = sorted({0, len(h) // 2, len(h) - 1})
    fig = _figure(figsize=(13, 3.4))
    axes = fig.subplots(1, 3)
    import matplotlib as mpl

    cmap = mpl.colormaps["viridis"]
    for ax, (name, what, m) in zip(axes, mats):
        top = 0.0
        for j, i in enumerate(epochs):
            if m.shape[1] == 0:
                continue
            label = f"epoch {h[i].get('epoch', i + 1)}"
            ax.plot(np.arange(m.shape[1]), m[i], lw=1.2, color=cmap(j / max(len(epochs) - 1, 1)), label=label)
            top = max(top, float(np.nanmax(m[i])) if np.isfinite(m[i]).any() else 0.0)
        ax.set_xlabel("position t")
        ax.set_ylabel(name)
        ax.set_title(what, fontsize=10)
        ax.grid(alpha=0.3)
        # Headroom above the largest value: ESS often sits exactly at P, where a top limit at
        # the data's maximum would clip its lines.
        ax.set_ylim(0, top * 1.1 if top > 0 else 1.0)
        if m.shape[1]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_traces(idata, path="traces.png", *, var_names: Sequence[str] | None = None) -> Path:
    """ArviZ trace plot (densities and per-chain traces) of the posterior traces in ``idata``
    (e.g. from :func:`pyro_ssl.diagnostics.run_chains`)."""
    import warnings

    import arviz as az

    names = list(var_names) if var_names is not None else list(idata.posterior.data_vars)
    if not names:
        raise ValueError("idata.posterior has no variables to plot")
    fig = _figure(figsize=(11, 2.6 * len(names)))
    axes = fig.subplots(len(names), 2, squeeze=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        az.plot_trace(idata, var_names=names, axes=axes, compact=False, legend=True)
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------------------- demo
def demo(outdir="docs/img", *, epochs: int = 12, num_chains: int = 3, quiet: bool = False) -> list[Path]:
    """Fit small models on gensim's Lee corpus and write every plot into ``outdir``."""
    import torch

    outdir = Path(outdir)
    texts = gensim_corpus_texts("lee_background")
    corpus = Corpus.from_texts(texts, vocab_size=3000).filter_min_length(80).truncate(80)
    train, test = corpus.split(test_size=0.2, seed=0)
    tokens, lengths = test.padded()
    kw = dict(K=10, hidden_size=32, num_particles=8, batch_size=64)
    models = {}
    for lag in (0, 4):
        m = SSL(ancestor_lag=lag, **kw).fit(train, epochs=epochs, eval_data=(tokens, lengths, 60),
                                             eval_particles=100, progress=not quiet)
        models[f"ancestor_lag={lag}"] = m
    paths = [
        plot_training_curves(models, ["log_joint_per_token", "completion_ppl"], outdir / "training_curves.png"),
        plot_mixing(models["ancestor_lag=0"], outdir / "mixing_lag0.png", title="plain CSMC (ancestor_lag=0)"),
        plot_mixing(models["ancestor_lag=4"], outdir / "mixing_lag4.png", title="ancestor sampling (ancestor_lag=4)"),
    ]
    m = models["ancestor_lag=4"]
    top = m.top_words(8)
    phi = m.phi
    weights = [phi[k].topk(8).values.tolist() for k in range(m.K)]
    paths.append(plot_topics(top, outdir / "topics.png", weights=weights))
    doc = test[0][:48]
    topics = m.predict([doc], num_sweeps=10)[0]
    paths.append(plot_topic_ribbon(m.vocab.decode(doc), topics, outdir / "topic_ribbon.png", K=m.K))
    with torch.random.fork_rng(devices=[]):
        _, idata = run_chains(train, num_chains=num_chains, epochs=epochs, eval_data=test.take(10),
                              eval_particles=50, progress=not quiet, **kw)
    paths.append(plot_traces(idata, outdir / "traces.png"))
    return paths


def _main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pyro_ssl.plots", description="Render the example plots.")
    parser.add_argument("--demo", metavar="DIR", default="docs/img", help="folder for the PNGs (default docs/img)")
    parser.add_argument("--epochs", type=int, default=12, help="epochs per fit (default 12)")
    parser.add_argument("--chains", type=int, default=3, help="chains for the trace plot (default 3)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    for p in demo(args.demo, epochs=args.epochs, num_chains=args.chains, quiet=args.quiet):
        print(os.fspath(p))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
