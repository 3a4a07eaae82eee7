"""SVI against particle Gibbs on the seed's IMDB completion setup (issue 5).

Same model, same data, same scorer; only the learning method differs. For each ``K`` both
methods train under the same wall-clock budget (training time only; scoring is excluded) and
are scored at evenly spaced time checkpoints by the SMC completion perplexity
(:meth:`pyro_ssl.SSL.completion_perplexity`, ``--eval-particles`` particles), then once more at
the end with ``--final-particles`` particles over three filter seeds (mean and spread).

Particle Gibbs runs with ``pyro_ssl.fit``'s current defaults; SVI with ``fit(method="svi")``'s.

Writes a JSON record, a Markdown table and a plot (perplexity against training seconds).

Usage (from the repository root)::

    OMP_NUM_THREADS=1 python benchmarks/svi_vs_pg.py             # K in {10, 50}, 120 s each
    OMP_NUM_THREADS=1 python benchmarks/svi_vs_pg.py --quick     # smoke run, about a minute
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "imdb" / "imdb_reviews_sample.csv"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--K", type=int, nargs="+", default=[10, 50])
    p.add_argument("--methods", nargs="+", default=["svi", "pg"], choices=["svi", "pg"])
    p.add_argument("--budget", type=float, default=120.0, help="training seconds per (method, K)")
    p.add_argument("--checkpoints", type=int, default=6, help="scored time points per run")
    p.add_argument("--eval-particles", type=int, default=50)
    p.add_argument("--final-particles", type=int, default=100)
    p.add_argument("--num-docs", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-json", type=Path, default=None, help="default docs/results_svi.json")
    p.add_argument("--out-md", type=Path, default=None, help="default docs/results_svi.md")
    p.add_argument("--out-plot", type=Path, default=None, help="default docs/img/svi_vs_pg.png")
    p.add_argument("--quick", action="store_true",
                   help="K=10, 50 documents, 15 s budget, few particles; outputs default to a temp dir")
    args = p.parse_args(argv)
    if args.quick:
        args.K, args.budget, args.checkpoints = [10], 15.0, 3
        args.eval_particles, args.final_particles, args.num_docs = 20, 20, 50
    base = Path(tempfile.gettempdir()) / "pyro_ssl_svi_quick" if args.quick else ROOT / "docs"
    args.out_json = args.out_json or base / "results_svi.json"
    args.out_md = args.out_md or base / "results_svi.md"
    args.out_plot = args.out_plot or base / "img" / "svi_vs_pg.png"
    return args


def run_one(method: str, K: int, split, args) -> dict:
    """Train under the time budget, scoring at checkpoints; returns the run's record."""
    import pyro_ssl

    ev = (split.eval_tokens, split.eval_lengths, split.T1)
    marks = [args.budget * (i + 1) / args.checkpoints for i in range(args.checkpoints)]
    state = {"train_s": 0.0, "next": 0, "curve": []}

    def callback(model, entry):
        state["train_s"] += entry["seconds"]
        done = state["train_s"] >= args.budget
        if state["next"] < len(marks) and (state["train_s"] >= marks[state["next"]] or done):
            while state["next"] < len(marks) and state["train_s"] >= marks[state["next"]]:
                state["next"] += 1
            t0 = time.perf_counter()
            est = model.completion_perplexity(*ev, num_particles=args.eval_particles, seeds=(entry["epoch"],))
            point = {"epoch": entry["epoch"], "train_seconds": state["train_s"], "ppl": est.mean,
                     "eval_seconds": time.perf_counter() - t0}
            state["curve"].append(point)
            print(f"  {method} K={K} epoch {entry['epoch']:3d}  train {state['train_s']:6.1f}s  "
                  f"ppl {est.mean:7.2f}", flush=True)
        return done

    t_start = time.perf_counter()
    common = dict(K=K, epochs=100_000, seed=args.seed, progress=False, callback=callback)
    model = pyro_ssl.fit(split.train, method=method, **common)
    wall = time.perf_counter() - t_start
    final = model.completion_perplexity(*ev, num_particles=args.final_particles, seeds=(101, 102, 103))
    epochs = len(model.history)
    secs = [h["seconds"] for h in model.history]
    rec = {
        "method": method,
        "K": K,
        "epochs": epochs,
        "train_seconds": sum(secs),
        "seconds_per_epoch": sum(secs) / max(epochs, 1),
        "seconds_per_epoch_after_first": sum(secs[1:]) / max(epochs - 1, 1),
        "wall_seconds": wall,
        "curve": state["curve"],
        "final_ppl": final.mean,
        "final_ppl_std": final.std,
        "final_ppl_values": final.values,
        "final_particles": args.final_particles,
    }
    rec.update(topic_structure(model))
    last = model.history[-1]
    rec["last_train_metric"] = {k: last[k] for k in ("elbo_per_token", "log_joint_per_token") if k in last}
    if method == "svi":
        rec["settings"] = model.svi.config.as_dict()
    else:
        rec["settings"] = model.get_params()
    return rec


@torch.no_grad()
def topic_structure(model, num_docs=200, length=100, seed=0) -> dict:
    """How much topic structure was learned, beyond perplexity.

    ``effective_topics``: ``exp`` of the entropy of topic frequencies in sequences drawn from
    the learned prior; ``switch_rate``: share of steps whose topic differs from the previous
    one; ``topic_entropy``: mean entropy of ``phi_k`` in nats (``log V`` = 8.5 is uniform).
    """
    torch.manual_seed(seed)
    z = model.prior.sample(num_docs, length)
    f = torch.bincount(z.flatten(), minlength=model.K).double()
    f = f / f.sum()
    H = float(-(f * f.clamp_min(1e-300).log()).sum())
    ent = -(model.phi.double() * model.log_phi.double()).sum(-1)
    return {
        "effective_topics": float(torch.exp(torch.tensor(H))),
        "switch_rate": float((z[:, 1:] != z[:, :-1]).double().mean()),
        "topic_entropy": float(ent.mean()),
    }


def unigram_ppl(split, beta=0.5) -> float:
    from pyro_ssl.baselines.unigram import UnigramLM

    u = UnigramLM(beta).fit(split.train.tolist(), split.train.V)
    lp = u.log_probs[split.continuation]
    return float(torch.exp(-lp.mean()))


def write_markdown(result: dict, path: Path) -> str:
    a = result["args"]
    lines = [
        "# SVI vs particle Gibbs: completion perplexity against training time",
        "",
        f"IMDB seed setup: {a['num_docs']} reviews, V = 5000, T1 = 100 observed, T2 = 70 held out; "
        f"each (method, K) trained for a budget of {a['budget']:.0f} s of training time "
        f"(`OMP_NUM_THREADS=1`, {result['machine']}). Perplexity by the SMC particle filter: "
        f"curve points with {a['eval_particles']} particles (one filter seed), final column with "
        f"{a['final_particles']} particles, mean ± sd over 3 filter seeds. "
        f"Add-0.5 unigram on the same split: {result['unigram_ppl']:.1f}.",
        "",
        f"Command: `{result['command']}`",
        "",
        "| method | K | epochs | s/epoch | train s | ppl at checkpoints (train s: ppl) | final ppl |"
        + (" eff. topics | phi entropy |" if all("effective_topics" in r for r in result["runs"]) else ""),
        "|---|---|---|---|---|---|---|" + ("---|---|" if all("effective_topics" in r for r in result["runs"]) else ""),
    ]
    for r in result["runs"]:
        curve = ", ".join(f"{p['train_seconds']:.0f}: {p['ppl']:.1f}" for p in r["curve"])
        name = "SVI" if r["method"] == "svi" else "particle Gibbs"
        lines.append(
            f"| {name} | {r['K']} | {r['epochs']} | {r['seconds_per_epoch']:.2f} | {r['train_seconds']:.0f} | "
            f"{curve} | {r['final_ppl']:.1f} ± {r['final_ppl_std']:.2f} |"
            + (f" {r['effective_topics']:.1f} | {r['topic_entropy']:.2f} |" if "effective_topics" in r else "")
        )
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def write_plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    Ks = sorted({r["K"] for r in result["runs"]})
    fig, axes = plt.subplots(1, len(Ks), figsize=(5 * len(Ks), 3.8), squeeze=False)
    for ax, K in zip(axes[0], Ks):
        for r in (r for r in result["runs"] if r["K"] == K):
            xs = [p["train_seconds"] for p in r["curve"]]
            ys = [p["ppl"] for p in r["curve"]]
            label = "SVI (amortised guide)" if r["method"] == "svi" else "particle Gibbs (stochastic EM)"
            ax.plot(xs, ys, marker="o", label=label)
        ax.axhline(result["unigram_ppl"], color="gray", ls="--", lw=1, label="unigram")
        ax.set_title(f"K = {K}")
        ax.set_xlabel("training time (s)")
        ax.set_ylabel("completion perplexity (SMC)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.data.exists():
        print(f"skipping: IMDB sample not found at {args.data}")
        return 0
    from pyro_ssl.data import completion_split, load_corpus

    torch.set_num_threads(1)
    corpus = load_corpus(str(args.data), vocab_size=5000)
    split = completion_split(corpus, T1=100, T2=70, num_docs=args.num_docs, seed=0)
    result = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/svi_vs_pg.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread",
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "unigram_ppl": unigram_ppl(split),
        "runs": [],
    }
    for K in args.K:
        for method in args.methods:
            print(f"{method} K={K}", flush=True)
            result["runs"].append(run_one(method, K, split, args))
    args.out_json.parent.mkdir(parents=True, exist_ok=True)
    args.out_json.write_text(json.dumps(result, indent=1))
    print(write_markdown(result, args.out_md))
    write_plot(result, args.out_plot)
    print(f"wrote {args.out_json}, {args.out_md}, {args.out_plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
