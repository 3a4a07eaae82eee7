"""Two package revisions in one run: the seed-size sweep and EM epochs, interleaved.

Timing on a shared box drifts with the other processes' load, so two revisions are only
compared within one run, measurement by measurement: each repeat runs every measurement once
for each revision, alternating which goes first (old, new, then new, old, ...), and every
measurement is a fresh subprocess with ``PYTHONPATH`` set to that revision's tree (the child
drops an editable install's import hook and checks that every ``pyro_ssl`` module came from
that tree). ``--quick`` (and ``--grouped``) run one revision's three measurements of a repeat
in one process, to save start-ups. Reported per measurement: the median over
repeats of wall and CPU seconds for each revision, the ratio of the medians new / old, and the
median (min - max) of the per-repeat paired ratios.

Seed size (``_common.SEED_SIZE``): 200 documents x 100 tokens (synthetic Zipf), V = 5000,
K = 50, H = 64, P = 10, one thread. Measurements:

* ``sweep``: one ``csmc_sweep`` (plain CSMC, ``ancestor_lag=0``, multinomial, diagnostics
  off) of all 200 documents under random topics and a random reference, as in
  ``bench_sweep.py``;
* ``epoch, seed algorithm``: one ``StochasticEM.run_epoch`` with preset ``seed`` (uniform
  start, lag 0, global emissions, one minibatch of all documents, 1 M-step);
* ``epoch, fit defaults``: one ``run_epoch`` with ``fit``'s learning settings (lag 5,
  leave-out emissions, minibatches of 50 with 5 M-steps each, ``init="smc"``);
* ``epoch, exact default`` (only with ``--only ...,epoch_exact``; revisions with ``SSLConfig``):
  one ``run_epoch`` of fit's exact kernel after its warm-up (blocked CSMC, blocks of 20 every 10,
  look-ahead 5, adaptive resampling below 0.5, collapsed emissions), pinned;

and, from the epochs' history entries, their E-step and M-step seconds, and the time of
``initialize()``. Every child warms up first (one untimed sweep, or one epoch of a small
separate run on 50 documents) so first-call costs are not timed. The settings are pinned
explicitly, so both revisions run the same algorithm whatever their defaults; the child
reports the settings it ran with and the table flags any difference.

Both APIs are handled: ``pyro_ssl.config.SSLConfig`` + ``StochasticEM(model, TokenShard, config)``
(after the refactor), or ``EMConfig`` + ``StochasticEM(model, tokens, lengths, cfg, seed=...)``.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_revisions.py --base ae7a99e              # ~5 minutes
    OMP_NUM_THREADS=1 python benchmarks/bench_revisions.py --base ae7a99e --quick      # under 2 minutes
    python benchmarks/bench_revisions.py --base ae7a99e --new HEAD --repeats 7 --json out.json
    # the default when issue 16 was filed (ae7a99e) against an exact setting of this tree, one row:
    OMP_NUM_THREADS=1 python benchmarks/bench_revisions.py --base ae7a99e --compare epoch_defaults:epoch_exact \
        --exact-settings '{"num_particles": 20}'

``--base`` (and ``--new``, default: this working tree, uncommitted changes included) are git
revisions; a temporary ``git worktree`` is created for each and removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from _common import SEED_SIZE, load_average, machine_line, table  # noqa: E402  (torch only, no pyro_ssl)

SEED_EPOCH = dict(num_particles=10, ancestor_lag=0, init="uniform", emission="global", batch_size=10**9,
                  mstep_iters=1, init_steps=0, sweeps_per_epoch=1)
"""The seed's algorithm (preset ``seed`` after the refactor), pinned."""

DEFAULT_EPOCH = dict(num_particles=10, ancestor_lag=5, init="smc", emission="leave_out", batch_size=50,
                     mstep_iters=5, init_steps=0, sweeps_per_epoch=1)
"""``fit``'s learning defaults (as of both ae7a99e and the refactor), pinned."""

EXACT_EPOCH = dict(warmup_epochs=0, kernel="blocked", emission="collapsed", num_particles=10, block_size=20,
                   block_stride=10, block_lookahead=5, block_resample_below=0.5, resampling="multinomial",
                   batch_size=50, mstep_iters=5, init_steps=0, sweeps_per_epoch=1)
"""``fit``'s exact default after its warm-up before the tenth session of 2026-12-04 (with the Gibbs final
draw, pinned where a revision has ``block_final_draw``), pinned; needs the ``SSLConfig`` API."""

KINDS = {
    "sweep": "sweep (csmc_sweep, lag 0)",
    "epoch_seed": "epoch, seed algorithm",
    "epoch_defaults": "epoch, fit defaults",
    "epoch_exact": "epoch, exact default",
}
REPORTED = ("num_particles", "ancestor_lag", "init", "emission", "batch_size", "mstep_iters", "resampling",
            "phi_update", "sweeps_per_epoch", "init_steps", "kernel", "block_size", "block_stride",
            "block_lookahead", "block_resample_below", "block_final_draw")
WARM_DOCS = 50


# ----------------------------------------------------------------------------- child
def _timed(fn):
    import time as _t

    c0, w0 = _t.process_time(), _t.perf_counter()
    r = fn()
    return r, _t.perf_counter() - w0, _t.process_time() - c0


def child(kinds: list[str], inner: dict, expect_root: str, exact: dict | None = None) -> list[dict]:
    """Measurements ``kinds`` in this (fresh) process, against whichever ``pyro_ssl`` is on the path."""
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    from _common import random_log_phi, synthetic_corpus

    # An editable install of the package adds a meta-path finder that serves any module the
    # tree on PYTHONPATH lacks from the installed tree (e.g. ``pyro_ssl.config`` for an old
    # revision): drop it, so only ``expect_root`` is importable.
    sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")
                        and "__editable__" not in type(f).__module__]
    import pyro_ssl

    root = os.path.dirname(os.path.dirname(os.path.abspath(pyro_ssl.__file__)))
    if not os.path.samefile(root, expect_root):
        raise SystemExit(f"pyro_ssl imported from {root}, expected {expect_root}")
    try:
        from pyro_ssl.config import SSLConfig

        new_api = True
    except ImportError:
        SSLConfig = None
        new_api = False
    from pyro_ssl.infer.em import StochasticEM
    from pyro_ssl.model import TopicalSSL

    outs = [measure(kind, inner[kind], new_api, SSLConfig, StochasticEM, TopicalSSL, random_log_phi,
                    synthetic_corpus, root, exact or {}) for kind in kinds]
    stray = sorted({os.path.abspath(m.__file__) for name, m in list(sys.modules.items())
                    if name.split(".")[0] == "pyro_ssl" and getattr(m, "__file__", None)
                    and not os.path.abspath(m.__file__).startswith(os.path.join(root, ""))})
    if stray:
        raise SystemExit(f"modules imported from outside {root}: {stray}")
    return outs


def measure(kind, inner, new_api, SSLConfig, StochasticEM, TopicalSSL, random_log_phi, synthetic_corpus, root,
            exact: dict):
    import torch

    s = SEED_SIZE
    D, T, P, K, H, V = s["D"], s["T"], s["P"], s["K"], s["H"], s["V"]
    torch.manual_seed(0)
    tokens, lengths = synthetic_corpus(D, T, V, seed=0)
    out = {"kind": kind, "api": "SSLConfig" if new_api else "EMConfig", "root": root, "wall": [], "cpu": [],
           "load_before": load_average()}

    if kind == "sweep":
        from pyro_ssl.smc.csmc import csmc_sweep

        log_phi = random_log_phi(K, V, seed=0)
        prior = TopicalSSL(K, V, hidden_size=H).prior.eval()
        ref = torch.randint(K, (D, T))
        gen = torch.Generator().manual_seed(0)

        def fn():
            return csmc_sweep(prior, log_phi, tokens, lengths, P, ref, ancestor_lag=0, generator=gen)

        fn()  # warm-up
        for _ in range(inner):
            _, w, c = _timed(fn)
            out["wall"].append(w)
            out["cpu"].append(c)
        out["settings"] = {"num_particles": P, "ancestor_lag": 0, "resampling": "multinomial"}
    else:
        settings = {"epoch_seed": SEED_EPOCH, "epoch_defaults": DEFAULT_EPOCH, "epoch_exact": {**EXACT_EPOCH, **exact}}[kind]
        if kind == "epoch_exact" and not new_api:
            raise SystemExit("epoch_exact needs a revision with pyro_ssl.config.SSLConfig (the exact kernel)")

        def make(tok, n, seed):
            model = TopicalSSL(K, V, hidden_size=H)
            if new_api:
                from pyro_ssl.data.shard import TokenShard

                if kind == "epoch_seed":
                    cfg = SSLConfig.from_flat(preset="seed", K=K, hidden_size=H, seed=seed)
                else:
                    # What these settings meant before the tenth session's defaults (systematic
                    # resampling, the Metropolised final draw), pinned where the revision has them.
                    from pyro_ssl.config import settings as all_settings

                    pins = {"resampling": "multinomial"}
                    if any(x.name == "block_final_draw" for x in all_settings()):
                        pins["block_final_draw"] = "gibbs"
                    cfg = SSLConfig.from_flat(K=K, hidden_size=H, seed=seed, **{**pins, **settings})
                return StochasticEM(model, TokenShard(tok, n, V=V), cfg)
            from pyro_ssl.infer.em import EMConfig

            return StochasticEM(model, tok, n, EMConfig(**settings), seed=seed)

        warm = make(tokens[:WARM_DOCS], lengths[:WARM_DOCS], 1)
        warm.run_epoch()  # warm-up: every code path of an epoch, on a small separate run
        del warm
        em = make(tokens, lengths, 0)
        _, out["init_wall"], out["init_cpu"] = _timed(em.initialize)
        out["estep"], out["mstep"] = [], []
        for _ in range(inner):
            entry, w, c = _timed(em.run_epoch)
            out["wall"].append(w)
            out["cpu"].append(c)
            out["estep"].append(entry["estep_seconds"])
            out["mstep"].append(entry["mstep_seconds"])
        flat = em.config.flat() if new_api else em.config.as_dict()
        out["settings"] = {k: flat[k] for k in REPORTED if k in flat}
    out["load_after"] = load_average()
    return out


# ----------------------------------------------------------------------------- parent
def _git(*args, check=True) -> str:
    return subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True, check=check).stdout.strip()


def _describe(path: str) -> str:
    rev = subprocess.run(["git", "-C", path, "log", "-1", "--format=%h %s"], capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "-C", path, "status", "--porcelain", "--", "pyro_ssl"],
                           capture_output=True, text=True).stdout.strip()
    rev = rev.strip()
    return (rev[:70] + ("..." if len(rev) > 70 else "")) + (" + uncommitted changes in pyro_ssl/" if dirty else "")


def run_child(kinds: list[str], root: str, inner: dict, timeout: float, exact: dict | None = None) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=root, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, os.path.abspath(__file__), "--child", ",".join(kinds), "--inner", json.dumps(inner),
           "--root", root, "--exact-settings", json.dumps(exact or {})]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir(), timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{kinds} in {root} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _med(xs):
    return statistics.median(xs)


def summarise(results: dict, repeats_done: int) -> str:
    """``results[kind][label]``: list over repeats of child outputs."""
    rows = []
    notes = []

    def row(name, old_vals, new_vals, paired_old, paired_new, cpu=None):
        mo, mn = _med(old_vals), _med(new_vals)
        pr = [n / o for o, n in zip(paired_old, paired_new)]
        cells = [name, f"{mo:.3f}", f"{mn:.3f}", f"{mn / mo:.2f}",
                 f"{_med(pr):.2f} ({min(pr):.2f} - {max(pr):.2f})"]
        if cpu is not None:
            co, cn = cpu
            cells += [f"{_med(co):.3f}", f"{_med(cn):.3f}", f"{_med(cn) / _med(co):.2f}"]
        else:
            cells += ["", "", ""]
        rows.append(tuple(cells))

    for kind, title in KINDS.items():
        if kind not in results:
            continue
        old, new = results[kind]["old"], results[kind]["new"]
        if old and old[0]["kind"] != kind:
            title = f"{KINDS[old[0]['kind']]} (old) vs {title} (new)"
        n = min(len(old), len(new))
        old, new = old[:n], new[:n]
        if not n:
            continue
        ow = [_med(r["wall"]) for r in old]
        nw = [_med(r["wall"]) for r in new]
        oc = [_med(r["cpu"]) for r in old]
        nc = [_med(r["cpu"]) for r in new]
        row(title, ow, nw, ow, nw, (oc, nc))
        if kind != "sweep":
            for part in ("estep", "mstep"):
                o = [_med(r[part]) for r in old]
                nn = [_med(r[part]) for r in new]
                row(f"  of which {'E' if part == 'estep' else 'M'}-step (history)", o, nn, o, nn)
            o = [r["init_wall"] for r in old]
            nn = [r["init_wall"] for r in new]
            row(f"  initialize() ({old[0]['settings'].get('init', '?')} start)", o, nn, o, nn,
                ([r["init_cpu"] for r in old], [r["init_cpu"] for r in new]))
        so, sn = old[0]["settings"], new[0]["settings"]
        diff = {k: (so.get(k), sn.get(k)) for k in set(so) | set(sn) if so.get(k) != sn.get(k)}
        if diff:
            notes.append(f"WARNING {title}: settings differ between revisions (old, new): {diff}")
        notes.append(f"{title}: settings {sn}")
    headers = ("median seconds", "old wall", "new wall", "new/old wall", "paired ratio (min - max)",
               "old CPU", "new CPU", "new/old CPU")
    return table(rows, headers) + "\n\n" + "\n".join(notes)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", help="git revision of the old package (required)")
    p.add_argument("--new", default=None, help="git revision of the new package (default: this working tree)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats per measurement and revision")
    p.add_argument("--inner", default=None,
                   help="timed calls per child after its warm-up (default 3 for the sweep, 1 per epoch; 1 with --quick)")
    p.add_argument("--only", default="sweep,epoch_seed,epoch_defaults",
                   help="comma-separated subset of " + ",".join(KINDS) + " (epoch_exact: revisions with the exact kernel)")
    p.add_argument("--quick", action="store_true",
                   help="2 repeats, one timed call each, the three measurements of a revision in one process "
                        "(under 2 minutes)")
    p.add_argument("--grouped", action="store_true",
                   help="run a revision's measurements of one repeat in one process (fewer start-ups)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per child")
    p.add_argument("--json", help="also write every measurement here")
    p.add_argument("--exact-settings", default="{}", help="JSON settings over the exact default's for epoch_exact, "
                   "e.g. '{\"num_particles\": 20}'")
    p.add_argument("--compare", metavar="OLD_KIND:NEW_KIND",
                   help="one row: the old revision's OLD_KIND against the new revision's NEW_KIND (e.g. "
                        "epoch_defaults:epoch_exact, the default when an issue was filed against today's exact kernel)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        kinds = args.child.split(",")
        inner = json.loads(args.inner) if args.inner else {}
        print("RESULT " + json.dumps(child(kinds, {k: inner.get(k, 1) for k in kinds}, args.root,
                                           json.loads(args.exact_settings))))
        return 0
    if not args.base:
        p.error("--base REV is required")
    if args.quick:
        args.repeats, args.grouped = 2, True
    kinds = [k for k in args.only.split(",") if k]
    run_as = {"old": {}, "new": {}}  # the kind each revision runs for a row (``--compare``)
    if args.compare:
        old_kind, _, new_kind = args.compare.partition(":")
        kinds, run_as["old"] = [new_kind], {new_kind: old_kind}
        if old_kind not in KINDS:
            p.error(f"unknown measurement {old_kind!r}; choose from {list(KINDS)}")
    exact = json.loads(args.exact_settings)
    if exact and "epoch_exact" not in kinds:
        p.error("--exact-settings applies to epoch_exact: add it to --only, or use --compare ...:epoch_exact")
    unknown = set(kinds) - set(KINDS)
    if unknown:
        p.error(f"unknown measurement(s) {sorted(unknown)}; choose from {list(KINDS)}")

    tmp = tempfile.mkdtemp(prefix="bench_revisions_")
    worktrees = []
    t_start = time.perf_counter()
    try:
        roots = {}
        for label, rev in (("old", args.base), ("new", args.new)):
            if rev is None:
                roots[label] = REPO
                continue
            path = os.path.join(tmp, label)
            _git("worktree", "add", "--detach", path, rev)
            worktrees.append(path)
            roots[label] = path
        print(machine_line(1))
        s = SEED_SIZE
        print(f"size: {s['D']} docs x {s['T']} tokens, P={s['P']}, K={s['K']}, H={s['H']}, V={s['V']}; "
              f"{args.repeats} interleaved repeats, "
              + ("one process per revision and repeat" if args.grouped else "each measurement a fresh process"))
        for label in ("old", "new"):
            print(f"{label}: {_describe(roots[label])}  ({roots[label]})")
        results = {k: {"old": [], "new": []} for k in kinds}
        n_inner = int(args.inner) if args.inner else None
        inner = {k: n_inner or (1 if args.quick or k != "sweep" else 3) for k in kinds}
        for r in range(args.repeats):
            order = ("old", "new") if r % 2 == 0 else ("new", "old")
            for group in [kinds] if args.grouped else [[k] for k in kinds]:
                for label in order:
                    ran = [run_as[label].get(k, k) for k in group]
                    outs = run_child(ran, roots[label], {run_as[label].get(k, k): inner[k] for k in group},
                                     args.timeout, exact)
                    for k, out in zip(group, outs):
                        results[k][label].append(out)
                        print(f"  repeat {r + 1}/{args.repeats} {KINDS[out['kind']]:<26} {label} ({out['api']}): "
                              f"wall {_med(out['wall']):.3f} s, CPU {_med(out['cpu']):.3f} s  "
                              f"[load {out['load_before']}]", flush=True)
        print()
        print(summarise(results, args.repeats))
        print(f"\ntotal {time.perf_counter() - t_start:.0f} s; load average now {load_average()}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"machine": machine_line(1), "roots": {k: _describe(v) for k, v in roots.items()},
                           "results": results}, f, indent=1)
    finally:
        for path in worktrees:
            _git("worktree", "remove", "--force", path, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
