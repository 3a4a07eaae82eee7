"""A one-page HTML report of a fitted model: ``model.report("report.html")``, ``pyro-ssl report``.

The page is self-contained (figures inline as base64 PNG, styles inline, no scripts, nothing
fetched), so it can be mailed, archived or opened offline. Sections:

* the model: sizes, settings, epochs, best epoch of an early-stopped fit;
* topics, most used first (as ``show_topics``): top words with their probabilities, and the
  topic grid figure;
* documents coloured by topic: each word on its topic's colour (a posterior path from
  ``predict``), with the document's topic proportions (``transform``);
* training and validation curves and the sampler's mixing diagnostics (``pyro_ssl.plots``);
* a comparison table when one is given (``experiments/comparison.py``'s ``results.json``, a
  list of rows, or ``{name: {metric: value}}``).

Importing this module registers :func:`write_report` as ``SSL.report``.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from . import plots
from .estimator import SSL, as_tokens, register_front_end
from .version import __version__

__all__ = ["write_report", "comparison_rows"]

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
.meta { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; border-radius: 2px; vertical-align: middle; margin-right: 0.3em; }
.word { display: inline-block; margin: 0.08em 0.04em; padding: 0 0.25em; border-radius: 3px; }
.w { white-space: nowrap; margin-right: 0.6em; } .bar { display: inline-block; height: 0.6em; background: #888; margin-left: 0.2em; }
.doc { border: 1px solid #e3e3e3; border-radius: 4px; padding: 0.6em; margin: 0.8em 0; }
.mix { display: flex; height: 0.8em; width: 100%; margin: 0.3em 0 0.5em 0; border-radius: 2px; overflow: hidden; }
img { max-width: 100%; border: 1px solid #eee; } td.tid { white-space: nowrap; }
"""


def _css(rgba, alpha: float | None = None) -> str:
    r, g, b, a = rgba
    return f"rgba({round(255 * r)}, {round(255 * g)}, {round(255 * b)}, {a if alpha is None else alpha:.2f})"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _fmt(v) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return html.escape(str(v)) if v is not None else "-"


def comparison_rows(comparison) -> list[dict]:
    """Rows of a comparison table from ``experiments/comparison.py``'s JSON (a path or its dict),
    a list of row dicts, or ``{name: {metric: value}}``; scalar columns only."""
    if isinstance(comparison, (str, os.PathLike)):
        comparison = json.loads(Path(comparison).read_text(encoding="utf-8"))
    if isinstance(comparison, Mapping) and "summary" in comparison:
        comparison = comparison["summary"]
    if isinstance(comparison, Mapping):
        rows = [{"model": name, **dict(vals)} for name, vals in comparison.items()]
    elif isinstance(comparison, Sequence):
        rows = [dict(r) for r in comparison]
    else:
        raise TypeError("comparison must be a path, a list of rows or a {name: {metric: value}} dict")
    return [{k: v for k, v in r.items() if v is None or isinstance(v, (str, int, float))} for r in rows]


def _table(rows: list[dict]) -> str:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    cols = [c for c in cols if any(r.get(c) is not None for r in rows)]  # no all-empty columns
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f'<td class="{"num" if isinstance(r.get(c), (int, float)) else ""}">{_fmt(r.get(c))}</td>'
                         for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _documents(model: SSL, docs, num_docs: int, num_sweeps: int, seed: int, colors) -> tuple[str, list[list[int]]]:
    tokens, lengths, _, _ = as_tokens(docs, model.V)
    keep = min(num_docs, tokens.shape[0])
    tokens, lengths = tokens[:keep], lengths[:keep]
    paths = model.predict((tokens, lengths), num_sweeps=num_sweeps, seed=seed)
    share = model.transform((tokens, lengths), num_sweeps=num_sweeps, seed=seed)  # (D, K)
    itos = getattr(model.vocab, "itos", None)
    out = []
    for d in range(keep):
        ids = tokens[d, : int(lengths[d])].tolist()
        words = "".join(
            f'<span class="word" style="background:{_css(colors[k], 0.45)}" title="topic {k}">'
            f"{html.escape(itos[i] if itos else str(i))}</span>" for i, k in zip(ids, paths[d]))
        order = share[d].argsort(descending=True).tolist()
        mix = "".join(f'<span style="width:{100 * float(share[d, k]):.2f}%;background:{_css(colors[k], 0.8)}" '
                      f'title="topic {k}: {float(share[d, k]):.2f}"></span>' for k in order if share[d, k] > 0)
        top = ", ".join(f"topic {k} {float(share[d, k]):.2f}" for k in order[:3])
        out.append(f'<div class="doc"><div class="meta">document {d} ({len(ids)} tokens); '
                   f"topic proportions (transform): {top}</div><div class=\"mix\">{mix}</div>{words}</div>")
    return "\n".join(out), paths


def write_report(
    model: SSL,
    path="report.html",
    *,
    docs=None,
    num_docs: int = 5,
    num_topics: int = -1,
    num_words: int = 10,
    comparison=None,
    title: str | None = None,
    num_sweeps: int = 10,
    seed: int = 0,
) -> Path:
    """Write the model's one-page HTML report and return its path.

    Args:
        model: a fitted (or loaded) :class:`~pyro_ssl.SSL`.
        path: the ``.html`` file to write (folders are created).
        docs: documents to show coloured by topic (anything :func:`~pyro_ssl.estimator.as_tokens`
            takes; default: the first training documents of a model fitted in this process).
        num_docs: documents to show.
        num_topics, num_words: topics (``-1``: all) and words per topic in the topic table.
        comparison: optional comparison table (see :func:`comparison_rows`).
        title: page title (default: a description of the model).
        num_sweeps, seed: sweeps and seed of the topic paths of the shown documents.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    K = model.K
    colors = plots.topic_colors(K)
    usage = model.topic_usage()
    order = model.topic_order()
    shown = order if num_topics is None or num_topics < 1 else order[:num_topics]
    phi = model.phi
    itos = getattr(model.vocab, "itos", None)
    title = title or f"pyro-ssl report: SSL with K={K} topics, V={model.V} words"
    parts = [f"<h1>{html.escape(title)}</h1>",
             f'<p class="meta">written {datetime.datetime.now():%Y-%m-%d %H:%M} by pyro-ssl {__version__}; '
             "everything on this page is in this one file.</p>"]

    # the model
    cfg = model.config.flat()
    h = model.history
    info = {"topics K": K, "vocabulary V": model.V, "epochs run": len(h),
            "training seconds": round(sum(e.get("seconds", 0.0) for e in h), 1),
            "best epoch (early stopping)": model.best_epoch if model.best_epoch is not None else "-",
            "method": model.method}
    if h and "log_joint_per_token" in h[-1]:
        info["log joint per token (last epoch)"] = round(h[-1]["log_joint_per_token"], 4)
    parts.append("<h2>Model</h2>" + _table([info]))
    parts.append("<details><summary>every setting</summary>" + _table([{k: str(v) for k, v in cfg.items()}])
                 + "</details>")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # topics
        rows = []
        for k in shown:
            p, idx = phi[k].topk(min(num_words, model.V))
            top = float(p[0])
            words = " ".join(
                f'<span class="w">{html.escape(itos[i] if itos else str(i))}<span class="bar" '
                f'style="width:{40 * float(pi) / top:.1f}px"></span> {float(pi):.3f}</span>'
                for pi, i in zip(p, idx.tolist()))
            rows.append(f'<tr><td class="tid"><span class="swatch" style="background:{_css(colors[k])}"></span>topic {k}</td>'
                        f'<td class="num">{float(usage[k]):.3f}</td><td>{words}</td></tr>')
        parts.append("<h2>Topics</h2><p>Most used first (share of the training tokens, or of tokens sampled "
                     "from the prior for a loaded model), with each topic's most probable words and their "
                     "probabilities.</p><table><tr><th>topic</th><th>usage</th><th>top words</th></tr>"
                     + "".join(rows) + "</table>")
        grid_k = shown[: min(len(shown), 20)]
        top_words = model.top_words(min(num_words, 8))
        weights = [phi[k].topk(min(8, model.V)).values.tolist() for k in grid_k]
        grid = plots.plot_topics([top_words[k] for k in grid_k], tmp / "topics.png", weights=weights,
                                 topic_ids=grid_k, K=K, title=f"top words of the {len(grid_k)} most used topics")
        parts.append(_img(grid, "topic grid"))

        # documents
        if docs is None and model._em is not None:
            docs = model._em.shard.padded(torch.arange(min(num_docs, len(model._em.shard))))
        parts.append("<h2>Documents coloured by topic</h2>")
        if docs is not None:
            body, _ = _documents(model, docs, num_docs, num_sweeps, seed, colors)
            parts.append(f"<p>Each word on the colour of its topic in one posterior path (predict, {num_sweeps} "
                         "sweeps); the bar above a document is its topic proportions (transform).</p>" + body)
        else:
            parts.append("<p>No documents given (pass <code>docs=</code>, or a corpus to <code>pyro-ssl report"
                         "</code>).</p>")

        # curves and mixing
        parts.append("<h2>Training and validation</h2>")
        keys = [k for k in ("log_joint_per_token", "completion_ppl", "heldout_log_lik", "mstep_loss")
                if any(k in e for e in h)]
        if keys:
            curves = plots.plot_training_curves({"training" if len(keys) == 1 else "this model": h}, keys,
                                                tmp / "curves.png")
            note = ("" if not any(k in ("completion_ppl", "heldout_log_lik") for k in keys)
                    else " Validation values come from the particle filter on the validation set.")
            parts.append(f"<p>Per-epoch values recorded during fitting.{note}</p>" + _img(curves, "training curves"))
        else:
            parts.append("<p>No training history.</p>")
        parts.append("<h2>Mixing of the sampler</h2>")
        if any("update_rate" in e for e in h):
            mixing = plots.plot_mixing(h, tmp / "mixing.png", title="by position, first, middle and last epoch")
            parts.append("<p>Share of documents whose topic changed in each epoch's sweep, effective sample size "
                         "and distinct ancestors by position; low values at early positions are path "
                         "degeneracy.</p>" + _img(mixing, "mixing diagnostics"))
        else:
            parts.append("<p>No per-position sampler statistics in the history.</p>")

    if comparison is not None:
        parts.append("<h2>Comparison</h2>" + _table(comparison_rows(comparison)))

    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
            + "\n".join(parts) + "\n</body></html>\n")
    path.write_text(page, encoding="utf-8")
    return path


register_front_end("report", write_report)
