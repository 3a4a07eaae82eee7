"""Does a change keep the one-process fit bit for bit? The same small fits under two revisions.

Each revision runs in a fresh subprocess with ``PYTHONPATH`` set to its tree (a temporary
``git worktree``; ``--new`` defaults to this working tree, uncommitted changes included) and
fits 120 synthetic documents of 20-60 tokens with three settings: the default (one warm-up
epoch, then the exact blocked collapsed E-step), the plain CSMC kernel under collapsed
emissions, and ``preset="heuristic"``. Printed per setting: whether ``log phi``, every topic
path, every LSTM weight and the per-epoch history (log joint, acceptance rate) are equal
(``torch.equal``, ``==``), not merely close.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/check_revision_fit.py --base 4aeb83f     # about a minute
    OMP_NUM_THREADS=1 python benchmarks/check_revision_fit.py --base 4aeb83f --quick   # the default only
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

SETTINGS = {
    "default": {"warmup_epochs": 1},
    "plain_collapsed": {"warmup_epochs": 1, "kernel": "ancestor", "ancestor_lag": 0},
    "heuristic": {"preset": "heuristic"},
}

CHILD = r"""
import sys, torch
tree, out, here = sys.argv[1:4]
sys.path.insert(0, here)
# An editable install's meta-path finder would serve this checkout's pyro_ssl whatever the path.
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")
                    and "__editable__" not in type(f).__module__]
import pyro_ssl
assert pyro_ssl.__file__.startswith(tree), pyro_ssl.__file__
from _common import synthetic_corpus
tokens, lengths = synthetic_corpus(120, 60, 500, seed=0)
docs = [tokens[i, : 20 + (i * 7) % 41].tolist() for i in range(120)]
res = {}
for name, kw in SETTINGS.items():
    m = pyro_ssl.fit(docs, K=5, epochs=3, hidden_size=16, batch_size=20, seed=3, progress=False, vocab_size=500, **kw)
    res[name] = {"log_phi": m.log_phi, "paths": m._em.gather_paths(), "weights": m.model.state_dict(),
                 "history": [(e["log_joint_per_token"], e.get("acceptance_rate")) for e in m.history]}
torch.save(res, out)
"""


def _git(*args) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def _fit(tree: str, out: str, settings: dict) -> dict:
    import torch

    env = dict(os.environ, PYTHONPATH=tree)
    code = f"SETTINGS = {settings!r}\n" + CHILD
    subprocess.run([sys.executable, "-c", code, tree, out, HERE], env=env, check=True, cwd=tree)
    return torch.load(out, weights_only=False)


def main(argv=None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="git revision to compare against")
    ap.add_argument("--new", default=None, help="git revision (default: this working tree)")
    ap.add_argument("--quick", action="store_true", help="the default setting only (about 15 seconds)")
    args = ap.parse_args(argv)
    settings = {"default": SETTINGS["default"]} if args.quick else SETTINGS
    with tempfile.TemporaryDirectory() as tmp:
        trees = []
        for name, rev in (("base", args.base), ("new", args.new)):
            if rev is None:
                trees.append(ROOT)
                continue
            path = os.path.join(tmp, name)
            _git("worktree", "add", "--detach", path, rev)
            trees.append(path)
        try:
            base, new = (_fit(t, os.path.join(tmp, f"{i}.pt"), settings) for i, t in enumerate(trees))
        finally:
            for t in trees:
                if t != ROOT:
                    _git("worktree", "remove", "--force", t)
    print(f"base {args.base} against {args.new or 'this working tree'}: equal bit for bit?")
    print("| setting | log phi | paths | LSTM weights | history |")
    print("|---|---|---|---|---|")
    same = True
    for name in settings:
        a, b = base[name], new[name]
        row = [torch.equal(a["log_phi"], b["log_phi"]), torch.equal(a["paths"], b["paths"]),
               all(torch.equal(v, b["weights"][k]) for k, v in a["weights"].items()), a["history"] == b["history"]]
        same &= all(row)
        print(f"| {name} | " + " | ".join("yes" if r else "**no**" for r in row) + " |")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
