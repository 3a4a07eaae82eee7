"""Which particle-Gibbs settings learn? The evidence behind ``fit``'s defaults (issue 8).

On the seed setup (IMDB sample: 200 reviews with >= 170 tokens, vocabulary 5000, first 100
tokens for training, next 70 held out), runs in one process:

* baselines scored exactly on the same split: unigram, HMM (EM, forward algorithm);
* SSL configurations: the seed's (uniform start, plain CSMC, P=10, phi from all documents,
  one M-step per epoch), more particles, ancestor sampling with a few lags, documents swept
  under topics fitted to the other documents ("leave-out"), and symmetry-breaking starts;

and records per epoch the completion perplexity (particle filter), the update rate by
position quintile, and seconds. Writes JSON, a Markdown table and a perplexity-vs-time plot.

    python benchmarks/learning.py --K 10 50 --epochs 20 --seeds 0 1 2 --out docs/learning
    python benchmarks/learning.py --quick          # a smoke run in about a minute
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

import pyro_ssl
from pyro_ssl.baselines import HMM, UnigramLM, perplexity
from pyro_ssl.data import completion_split, load_corpus

ROOT = Path(__file__).resolve().parents[1]
IMDB = ROOT.parent / "shared" / "data" / "imdb" / "imdb_reviews_sample.csv"

# name -> (SSL keyword arguments, run every seed?). Every setting is explicit so the table
# does not move when fit's defaults do.
_SEED = dict(init="uniform", num_particles=10, kernel="ancestor", ancestor_lag=0, emission="global", batch_size=10**9,
             mstep_iters=1, warmup_epochs=0)
_MB = dict(batch_size=50, mstep_iters=5)
CONFIGS = {
    "seed: uniform, CSMC P=10, global phi": (_SEED, True),
    "uniform, CSMC P=100, global phi": ({**_SEED, "num_particles": 100}, False),
    "uniform, PGAS L=5, global phi": ({**_SEED, **_MB, "ancestor_lag": 5}, False),
    "uniform, PGAS L=5, leave-out": ({**_SEED, **_MB, "ancestor_lag": 5, "emission": "leave_out"}, False),
    "smc, CSMC P=10, leave-out": ({**_SEED, **_MB, "init": "smc", "emission": "leave_out"}, False),
    "smc, PGAS L=5, leave-out (default until 2026-12-03)": (
        {**_SEED, **_MB, "init": "smc", "ancestor_lag": 5, "emission": "leave_out"}, True),
    "smc, PGAS L=10, leave-out": ({**_SEED, **_MB, "init": "smc", "ancestor_lag": 10, "emission": "leave_out"}, False),
    "hmm, PGAS L=5, leave-out": (
        {**_SEED, **_MB, "init": "hmm", "init_steps": 30, "ancestor_lag": 5, "emission": "leave_out"}, False),
    "smc, PGAS L=2, leave-out": ({**_SEED, **_MB, "init": "smc", "ancestor_lag": 2, "emission": "leave_out"}, False),
}


def load_split(path: Path, num_docs: int, seed: int = 0):
    corpus = load_corpus(path, vocab_size=5000)
    return corpus, completion_split(corpus, T1=100, T2=70, num_docs=num_docs, seed=seed)


def baselines(split, K_values, V):
    train = [split.train[i] for i in range(len(split.train))]
    tok, n, T1 = split.eval_tokens, split.eval_lengths, split.T1
    held = int((n - T1).sum())
    out = {}
    uni = UnigramLM(beta=0.1).fit(train, V)
    out["unigram"] = {"ppl": perplexity(float(uni.completion_log_likelihood(tok, n, T1).sum()), held)}
    for K in K_values:
        t0 = time.perf_counter()
        hmm = HMM(K, beta=0.1, n_iter=200, seed=0).fit(train, V)
        ll = float(hmm.completion_log_likelihood(tok, n, T1).sum())
        out[f"hmm K={K}"] = {"ppl": perplexity(ll, held), "seconds": time.perf_counter() - t0}
    return out


def run_config(name, kwargs, split, K, epochs, seed, eval_particles, eval_every, common):
    eval_data = (split.eval_tokens, split.eval_lengths, split.T1)
    t0 = time.perf_counter()
    model = pyro_ssl.SSL(K=K, seed=seed, **{**common, **kwargs})
    history = []

    def record(ssl, entry):
        entry["wall"] = time.perf_counter() - t0
        history.append({k: v for k, v in entry.items() if k not in ("update_rate", "ess", "ancestors")})

    model.fit(split.train, epochs=epochs, eval_data=eval_data, eval_every=eval_every,
              eval_particles=eval_particles, callback=record, progress=False)
    final = model.completion_perplexity(*eval_data, num_particles=eval_particles * 5, seeds=(100,)).mean
    steady = history[len(history) // 2:]
    quint = [sum(h["update_rate_quintiles"][q] for h in steady) / len(steady) for q in range(5)]
    return {
        "config": name, "K": K, "seed": seed, "final_ppl": final, "history": history,
        "update_rate_quintiles": quint,
        "seconds_per_epoch": sum(h["seconds"] for h in history) / len(history),
        "init_seconds": history[0]["wall"] - history[0]["seconds"] - history[0].get("eval_seconds", 0.0),
    }


def summarise(results, base):
    rows = {}
    for r in results:
        rows.setdefault((r["config"], r["K"]), []).append(r)
    lines = ["| config | K | completion ppl (mean ± sd over seeds) | update rate by position quintile | s/epoch |",
             "| --- | --- | --- | --- | --- |"]
    for (name, K), rs in rows.items():
        v = torch.tensor([r["final_ppl"] for r in rs], dtype=torch.float64)
        sd = float(v.std()) if len(rs) > 1 else 0.0
        q = [sum(r["update_rate_quintiles"][i] for r in rs) / len(rs) for i in range(5)]
        s = sum(r["seconds_per_epoch"] for r in rs) / len(rs)
        lines.append(f"| {name} | {K} | {float(v.mean()):.1f} ± {sd:.1f} (n={len(rs)}) | "
                     f"{' / '.join(f'{x:.2f}' for x in q)} | {s:.2f} |")
    lines.append("")
    lines.append("| baseline | completion ppl |")
    lines.append("| --- | --- |")
    for k, v in base.items():
        lines.append(f"| {k} | {v['ppl']:.1f} |")
    return "\n".join(lines)


def plot(results, base, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    Ks = sorted({r["K"] for r in results})
    fig, axes = plt.subplots(1, len(Ks), figsize=(6.5 * len(Ks), 4.5), squeeze=False)
    for ax, K in zip(axes[0], Ks):
        seen = set()
        for i, r in enumerate(r for r in results if r["K"] == K):
            h = [e for e in r["history"] if "completion_ppl" in e]
            color = f"C{list(CONFIGS).index(r['config']) % 10}"
            ax.plot([e["wall"] for e in h], [e["completion_ppl"] for e in h], color=color, alpha=0.8,
                    label=None if r["config"] in seen else r["config"])
            seen.add(r["config"])
        for j, (k, v) in enumerate(base.items()):
            if k == "unigram" or k == f"hmm K={K}":
                ax.axhline(v["ppl"], ls="--", color="k" if k == "unigram" else "gray", label=k)
        ax.set_xscale("log")
        ax.set_xlabel("wall-clock seconds (log)")
        ax.set_ylabel("completion perplexity")
        ax.set_title(f"K = {K}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=IMDB, help="IMDB CSV / aclImdb dir / tarball")
    p.add_argument("--K", type=int, nargs="+", default=[10, 50])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS)[:7], help="subset of config names")
    p.add_argument("--eval-particles", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--num-docs", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "learning")
    p.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = p.parse_args(argv)
    if not args.data.exists():
        raise SystemExit(f"IMDB data not found at {args.data}; pass --data (see docs/results.md)")
    torch.set_num_threads(args.threads)
    if args.quick:
        args.K, args.epochs, args.seeds, args.num_docs, args.eval_every = [5], 3, [0], 40, 1
        args.configs = [args.configs[0], "smc, PGAS L=5, leave-out (default until 2026-12-03)"]
    args.out.mkdir(parents=True, exist_ok=True)
    corpus, split = load_split(args.data, args.num_docs)
    common = dict(beta=0.1)
    print(f"data: {len(split.train)} docs, V={corpus.V}, T1={split.T1}, T2={split.T2}; load {os.getloadavg()}")
    base = baselines(split, args.K, corpus.V)
    for k, v in base.items():
        print(f"  {k}: ppl {v['ppl']:.1f}")
    results = []
    for K in args.K:
        for name in args.configs:
            kwargs, every_seed = CONFIGS[name]
            for seed in args.seeds if every_seed else args.seeds[:1]:
                r = run_config(name, kwargs, split, K, args.epochs, seed, args.eval_particles,
                               args.eval_every, common)
                results.append(r)
                print(f"K={K} {name} seed={seed}: ppl {r['final_ppl']:.1f}, quintiles "
                      f"{[round(x, 2) for x in r['update_rate_quintiles']]}, {r['seconds_per_epoch']:.2f} s/epoch",
                      flush=True)
                (args.out / "learning.json").write_text(json.dumps({"baselines": base, "runs": results}, indent=1))
    table = summarise(results, base)
    (args.out / "learning.md").write_text(table + "\n")
    plot(results, base, args.out / "learning.png")
    print(table)


if __name__ == "__main__":
    main()
