"""Kill a checkpointing fit with SIGKILL at a chosen moment, resume it, compare (issue 15).

A child process runs a small float64 fit with ``checkpoint_dir`` (one process with
:meth:`pyro_ssl.SSL.fit`, or rank ``r`` of a 2-process ``gloo`` group with
:func:`pyro_ssl.distributed.fit_distributed`). With ``--kill EVENT:N`` it sends itself SIGKILL
at the ``N``-th occurrence of ``EVENT``:

* ``minibatch``: inside an epoch, before the ``N``-th M-step;
* ``write-partial``: inside a checkpoint write, the temporary file half written;
* ``write-before-rename``: the temporary file complete, not yet renamed over the checkpoint;
* ``write-after-rename``: the checkpoint replaced, before the fit goes on.

The driver (:func:`kill_and_resume`) launches the ranks, and when one dies kills the others
(a scheduler ending the job), checks the checkpoint left behind is readable (or absent), then
relaunches every rank with ``resume=True`` and returns the final state, which must equal the
uninterrupted run's bit for bit. ``tests/test_kill.py`` runs a few kill points;
``benchmarks/killtest.py`` runs many.

    python tests/killfit.py --ckpt DIR --out FILE [--world 2 --rank R --init tcp://...] [--kill EVENT:N] [--resume]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
EVENTS = ("minibatch", "write-partial", "write-before-rename", "write-after-rename")
# One warm-up epoch, then two of the exact E-step (blocked, collapsed): kills land in both.
SETTINGS = dict(K=3, hidden_size=8, num_particles=4, batch_size=4, ancestor_lag=2, epochs=3, warmup_epochs=1,
                block_size=4, block_stride=2, seed=5)


def corpus_docs(D: int = 12, V: int = 9, seed: int = 3) -> list[list[int]]:
    import torch

    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 14, (D,), generator=g).tolist()
    return [torch.randint(V, (n,), generator=g).tolist() for n in lengths]


def _install_kill(spec: str | None) -> None:
    """Hooks that count events and SIGKILL this process at the chosen one."""
    if not spec:
        return
    import pyro_ssl.io as pio
    from pyro_ssl.infer.em import StochasticEM

    event, n = spec.split(":")
    if event not in EVENTS:
        raise SystemExit(f"unknown event {event!r}; choose from {EVENTS}")
    target, seen = int(n), {e: 0 for e in EVENTS}

    def at(name: str, before=None) -> None:
        seen[name] += 1
        if name == event and seen[name] == target:
            if before is not None:
                before()
            os.kill(os.getpid(), signal.SIGKILL)

    original_step = StochasticEM._mstep_minibatch

    def step(self, *a, **k):
        at("minibatch")
        return original_step(self, *a, **k)

    StochasticEM._mstep_minibatch = step
    original_write = pio.atomic_write

    def atomic_write(path, write):
        def w(tmp):
            write(tmp)
            size = os.path.getsize(tmp)
            at("write-partial", lambda: os.truncate(tmp, size // 2))
            at("write-before-rename")

        out = original_write(path, w)
        if Path(path).name == pio.CHECKPOINT_FILE:
            at("write-after-rename")
        return out

    pio.atomic_write = atomic_write


def _summary(ssl, em) -> dict:
    return {
        "paths": em.gather_paths().clone(),
        "counts": em.counts.cpu().clone(),
        "log_phi": ssl.log_phi.cpu().clone(),
        "weights": {k: v.cpu().clone() for k, v in ssl.model.state_dict().items()},
        "history": [e["log_joint_per_token"] for e in ssl.history],
        "epoch": em.epoch,
    }


def child(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ckpt", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--world", type=int, default=1)
    p.add_argument("--rank", type=int, default=0)
    p.add_argument("--init", default=None)
    p.add_argument("--kill", default=None)
    p.add_argument("--resume", action="store_true")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    import pyro_ssl
    from pyro_ssl.distributed import fit_distributed, leave_worker

    _install_kill(args.kill)
    docs = corpus_docs()
    if args.world == 1:
        ssl = pyro_ssl.SSL(dtype=torch.float64, **SETTINGS)
        ssl.fit(docs, progress=False, checkpoint_dir=args.ckpt, resume=args.resume)
        summary = _summary(ssl, ssl._em)
    else:
        import torch.distributed as dist

        dist.init_process_group("gloo", init_method=args.init, rank=args.rank, world_size=args.world)
        try:
            fit = fit_distributed(docs, dtype=torch.float64, checkpoint_dir=args.ckpt, resume=args.resume, **SETTINGS)
            summary = _summary(fit.ssl, fit.em)
        finally:
            dist.destroy_process_group()
    if args.rank == 0:
        torch.save(summary, args.out)
    if args.world > 1:
        leave_worker()  # no interpreter teardown after gloo (pyro_ssl.distributed.leave_worker)
    return 0


# ---------------------------------------------------------------------------- driver
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(ckpt, out, world: int = 1, kill: str | None = None, kill_rank: int = 0, resume: bool = False,
           timeout: float = 300) -> list[int]:
    """Run the fit's ranks; when one exits abnormally, SIGKILL the rest. Returns exit codes."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
    init = f"tcp://127.0.0.1:{_free_port()}"
    procs = []
    for r in range(world):
        cmd = [sys.executable, str(HERE / "killfit.py"), "--ckpt", str(ckpt), "--out", str(out), "--world", str(world),
               "--rank", str(r), "--init", init]
        if kill and r == kill_rank:
            cmd += ["--kill", kill]
        if resume:
            cmd.append("--resume")
        err = open(Path(out).parent / f"rank{r}{'.resume' if resume else ''}.err", "w")
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err))
        err.close()
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in procs):
        if any(p.poll() not in (None, 0) for p in procs) or time.monotonic() > deadline:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGKILL)  # the job dies with its rank
        time.sleep(0.02)
    return [p.returncode for p in procs]


def kill_and_resume(tmp: Path, world: int, kill: str, kill_rank: int = 0) -> dict:
    """Kill a fit at ``kill``, check the checkpoint, resume; returns the outcome and final state."""
    import torch

    from pyro_ssl.io import CHECKPOINT_FILE, load_checkpoint

    ckpt, out = tmp / "ckpt", tmp / "final.pt"
    ckpt.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    codes = launch(ckpt, out, world, kill=kill, kill_rank=kill_rank)
    killed = -signal.SIGKILL in codes
    state = load_checkpoint(ckpt / CHECKPOINT_FILE)  # raises if left unreadable
    at_epoch = None if state is None else int(state["epoch"])
    t1 = time.perf_counter()
    retries = 0
    while (codes2 := launch(ckpt, out, world, resume=True)) != [0] * world:
        # A resume that dies (e.g. a gloo connection reset at start-up on a loaded machine) is
        # relaunched, as a scheduler would: the checkpoint must still be good.
        retries += 1
        if retries > 2:
            errs = "".join((tmp / f"rank{r}.resume.err").read_text()[-2000:] for r in range(world))
            raise RuntimeError(f"resume after kill {kill} exited with {codes2}:\n{errs}")
    leftovers = sorted(p.name for p in ckpt.iterdir() if p.name != CHECKPOINT_FILE)
    return {"kill": kill, "killed": killed, "checkpoint_epoch": at_epoch, "kill_seconds": t1 - t0,
            "resume_seconds": time.perf_counter() - t1, "leftovers": leftovers, "resume_retries": retries,
            "final": torch.load(out, weights_only=True)}


def reference(tmp: Path, world: int) -> dict:
    """The uninterrupted run (checkpointing too, which must not change the numbers)."""
    import torch

    tmp.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):
        # Relaunched from scratch when a rank dies for a reason outside the fit: seen once
        # (2026-12-03), a rank aborting in gloo's teardown ("terminate called without an active
        # exception") after the result was written; the fit's numbers are checked below anyway.
        shutil.rmtree(tmp / "ckpt", ignore_errors=True)
        codes = launch(tmp / "ckpt", tmp / "final.pt", world)
        if codes == [0] * world:
            return torch.load(tmp / "final.pt", weights_only=True)
    raise RuntimeError(f"reference run exited with {codes}")


def identical(a: dict, b: dict) -> bool:
    import torch

    return (torch.equal(a["paths"], b["paths"]) and torch.equal(a["counts"], b["counts"])
            and torch.equal(a["log_phi"], b["log_phi"]) and a["history"] == b["history"]
            and a["epoch"] == b["epoch"]
            and all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"]))


if __name__ == "__main__":
    sys.exit(child())
