"""How far each E-step kernel moves the paths from one trained state (issue 16's mixing bar).

Fits fit's default of before the tenth session (``_common.FORMER_EXACT``: one trained state that
stays the same whatever today's default is, so the figures in docs/learning.md reproduce) on the
seed's IMDB setup (200 reviews, first 100 tokens, V = 5000) for ``--epochs`` epochs, then, from copies of that one state, runs ``--probe-epochs`` further epochs
with each kernel setting and prints the update rate by position quintile (the share of
documents whose topic at a position changed in a sweep), the collapsed step's acceptance and the
epoch's seconds. Every setting starts from the same paths, counts and LSTM, so the differences
are the kernels', not the training runs'. Last, one summary line per setting: its update rate by
quintile over the probe epochs with the standard error across documents, and its difference from
``--reference``'s (default the heuristic) with the paired standard error (the documents are the
independent units; they pair up because every setting starts from the same paths).
(``kernels_imdb.py`` instead trains each setting from scratch and scores it.)

    OMP_NUM_THREADS=1 python benchmarks/mixing_probe.py --settings default heuristic s20_p20
    python benchmarks/mixing_probe.py --quick      # 40 reviews, 2 training epochs (under 2 minutes)
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from pathlib import Path

import torch

import pyro_ssl
from pyro_ssl.config import SSLConfig
from pyro_ssl.data import completion_split, load_corpus
from pyro_ssl.infer.em import by_quintile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import FORMER_EXACT  # noqa: E402

IMDB = Path(__file__).resolve().parents[2] / "shared" / "data" / "imdb" / "imdb_reviews_sample.csv"
def _sys75_metro(**kw) -> dict:
    """Systematic resampling below ESS 0.75 with the Metropolised final draw, plus ``kw``."""
    return dict(resampling="systematic", block_resample_below=0.75, block_final_draw="metropolised", **kw)


#: Kernel settings applied to the trained state (SSLConfig fields): ``default`` is fit's default of
#: the day; every other setting is relative to the exact kernel before the tenth session
#: (``former_default``, ``_common.FORMER_EXACT``), so its figures in docs/learning.md reproduce.
SETTINGS = {
    "default": {},
    "heuristic": dict(kernel="ancestor", ancestor_lag=5, emission="leave_out"),
    "b10s5": dict(block_size=10, block_stride=5),
    "b14s7": dict(block_size=14, block_stride=7),
    "p20": dict(num_particles=20),
    "s20": dict(block_stride=20),
    "s20_p20": dict(block_stride=20, num_particles=20),
    "s20_p30": dict(block_stride=20, num_particles=30),
    "b30s15": dict(block_size=30, block_stride=15),
    "b30s15_p20": dict(block_size=30, block_stride=15, num_particles=20),
    "b40s20_p20": dict(block_size=40, block_stride=20, num_particles=20),
    "sys": dict(resampling="systematic"),
    "sys_s20": dict(resampling="systematic", block_stride=20),
    "sys_b14s7": dict(resampling="systematic", block_size=14, block_stride=7),
    "sys_ess75": dict(resampling="systematic", block_resample_below=0.75),
    "sys_ess100": dict(resampling="systematic", block_resample_below=1.0),
    "p15": dict(num_particles=15),
    "sys_p15": dict(resampling="systematic", num_particles=15),
    "sys_b16s8": dict(resampling="systematic", block_size=16, block_stride=8),
    "p20_look2": dict(num_particles=20, block_lookahead=2),
    "sys_s20_p20": dict(resampling="systematic", block_stride=20, num_particles=20),
    "p20_s15": dict(num_particles=20, block_stride=15),
    "sys_p20_s15": dict(resampling="systematic", num_particles=20, block_stride=15),
    "sys_p15_s15": dict(resampling="systematic", num_particles=15, block_stride=15),
    "sys_p20_b24s16": dict(resampling="systematic", num_particles=20, block_size=24, block_stride=16),
    "sys_p20_look2": dict(resampling="systematic", num_particles=20, block_lookahead=2),
    "ess50": dict(block_resample_below=0.5),
    "sys_ess50": dict(resampling="systematic", block_resample_below=0.5),
    "sys_ess25": dict(resampling="systematic", block_resample_below=0.25),
    "sys_ess50_b16s8": dict(resampling="systematic", block_resample_below=0.5, block_size=16, block_stride=8),
    "sys_ess75_b16s8": dict(resampling="systematic", block_resample_below=0.75, block_size=16, block_stride=8),
    "sys_ess50_b30s15": dict(resampling="systematic", block_resample_below=0.5, block_size=30, block_stride=15),
    "sys_ess75_b14s7": dict(resampling="systematic", block_resample_below=0.75, block_size=14, block_stride=7),
    "sys_ess75_b12s6": dict(resampling="systematic", block_resample_below=0.75, block_size=12, block_stride=6),
    "sys_ess90_b16s8": dict(resampling="systematic", block_resample_below=0.9, block_size=16, block_stride=8),
    "metro": dict(block_final_draw="metropolised"),
    "sys_metro": dict(resampling="systematic", block_final_draw="metropolised"),
    "sys_b16s8_metro": dict(resampling="systematic", block_size=16, block_stride=8, block_final_draw="metropolised"),
    "sys_ess75_metro": _sys75_metro(),
    **{f"sys_ess75_b{b}s{b // 2}_metro": _sys75_metro(block_size=b, block_stride=b // 2) for b in (14, 16, 18)},
    **{f"sys_ess75_p{p}_b{b}s{b // 2}_metro": _sys75_metro(num_particles=p, block_size=b, block_stride=b // 2)
       for p, b in ((8, 14), (8, 16), (8, 12), (9, 14), (9, 16))},
    "sys_ess75_b16s8_metro_look3": _sys75_metro(block_size=16, block_stride=8, block_lookahead=3),
    "sys_ess75_p12_b16s8": dict(resampling="systematic", block_resample_below=0.75, num_particles=12, block_size=16,
                                block_stride=8),
    "sys_ess75_p12": dict(resampling="systematic", block_resample_below=0.75, num_particles=12),
    "sys_ess75_p12_b16s8_look2": dict(resampling="systematic", block_resample_below=0.75, num_particles=12,
                                      block_size=16, block_stride=8, block_lookahead=2),
}
SETTINGS = {name: {**FORMER_EXACT, **s} for name, s in SETTINGS.items()}
SETTINGS["default"] = {k: v for k, v in SSLConfig().flat().items() if k in FORMER_EXACT}  # today's kernel
SETTINGS["former_default"] = dict(FORMER_EXACT)


def doc_quintile_changes(before: torch.Tensor, after: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """``(D, 5)`` share of each document's positions in each fifth of the document that changed
    between two flat path tensors (``offsets`` ``(D + 1,)``, as ``StochasticEM.global_offsets``), split
    as the epoch entry's quintiles are (:func:`pyro_ssl.infer.em.by_quintile`); with documents of one
    length (this probe's) the two are the same positions."""
    changed = (before != after).double()
    return torch.tensor([by_quintile(changed[int(a):int(b)]) for a, b in zip(offsets[:-1], offsets[1:])],
                        dtype=torch.float64)


def probe(model: pyro_ssl.SSL, setting: dict, epochs: int, data) -> tuple[list[dict], torch.Tensor]:
    """``epochs`` epochs from a copy of ``model``'s state under ``setting``: one dict per epoch, and
    each document's update rate by quintile averaged over the epochs, ``(D, 5)`` (one sweep per
    epoch, so an epoch's changes are one sweep's)."""
    m = copy.deepcopy(model)
    em = m._em
    em.config = em.config.replace(warmup_epochs=0, **setting)  # every probe epoch runs the setting's kernel
    em.sampler, em.learning = em.config.sampler, em.config.learning
    offsets = em.global_offsets()
    out, per_doc = [], []
    for _ in range(epochs):
        before = em.gather_paths()
        e = em.run_epoch()
        per_doc.append(doc_quintile_changes(before, em.gather_paths(), offsets))
        out.append({"quintiles": [round(q, 3) for q in e["update_rate_quintiles"]],
                    "acceptance": None if e.get("acceptance_rate") is None else round(e["acceptance_rate"], 3),
                    "seconds": round(e["seconds"], 2)})
    return out, torch.stack(per_doc).mean(0)


def paired_summary(rates: dict[str, torch.Tensor], reference: str) -> list[dict]:
    """Each setting's mean update rate by quintile with its standard error across documents, and
    its difference from ``reference``'s with the paired standard error (every setting starts from
    the same paths, so the documents pair up; documents are the independent units)."""
    out = []
    for name, r in rates.items():
        D = r.shape[0]
        row = {"setting": name, "quintiles": [round(float(v), 3) for v in r.mean(0)],
               "se": [round(float(v), 4) for v in r.std(0) / D ** 0.5]}
        if reference in rates and name != reference:
            d = r - rates[reference]
            row["minus_" + reference] = [round(float(v), 3) for v in d.mean(0)]
            row["paired_se"] = [round(float(v), 4) for v in d.std(0) / D ** 0.5]
        out.append(row)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=IMDB)
    p.add_argument("--K", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=30, help="training epochs of fit's default before probing")
    p.add_argument("--probe-epochs", type=int, default=3)
    p.add_argument("--docs", type=int, default=200)
    p.add_argument("--settings", nargs="+", default=["default", "heuristic"], choices=sorted(SETTINGS))
    p.add_argument("--reference", default="heuristic", help="setting the others are compared with, document by "
                   "document (paired standard errors)")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.docs, args.epochs, args.probe_epochs = 40, 2, 1
    if not args.data.is_file():
        print(f"no data at {args.data}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    corpus = load_corpus(args.data, vocab_size=5000)
    split = completion_split(corpus, T1=100, T2=70, num_docs=args.docs, seed=0)
    print(f"# load {os.getloadavg()[0]:.2f}", flush=True)
    model = pyro_ssl.SSL(K=args.K, seed=args.seed, **FORMER_EXACT).fit(split.train, epochs=args.epochs, progress=False)
    if args.reference not in args.settings:
        print(f"# --reference {args.reference} is not among --settings: no paired differences", flush=True)
    rates = {}
    for name in args.settings:
        epochs, rates[name] = probe(model, SETTINGS[name], args.probe_epochs, split.train)
        for i, e in enumerate(epochs):
            print(json.dumps({"K": args.K, "seed": args.seed, "setting": name, "probe_epoch": i + 1, **e}), flush=True)
    for row in paired_summary(rates, args.reference):
        print(json.dumps({"summary_over_probe_epochs": True, **row}), flush=True)
    print(f"# load {os.getloadavg()[0]:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
