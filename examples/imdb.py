"""The IMDB experiment under the evaluation protocol of ``docs/results.md`` (issue 17).

Reviews are split by review into training, validation and test sets; the vocabulary comes
from the training text only (the first ``T1 = 100`` tokens of each training review); every
model (unigram, Kneser-Ney, HMM, word LSTM LM, LDA, SSL) trains on those prefixes and has
every hyperparameter chosen on the validation reviews; the test is scored once at the end:
the seed's in-document completion (tokens 101-170 of the training reviews), completion of
unseen test reviews, and the held-out per-token log likelihood. Mean ± sd over training
seeds; the SSL's particle-filter error is reported apart. The protocol itself lives in
``experiments/protocol.py``; this script finds the data, runs it and adds the SSL's topics.

Outputs in ``--out`` (default ``outputs/imdb/``): ``results.md``, ``protocol.json``,
``protocol_test.png``, ``protocol_validation.png``, ``topics_K<K>.png`` (the chosen SSL,
training seed 0, topics by usage) and ``topic_ribbon_<i>.png`` (test reviews coloured by topic).

Usage::

    python examples/imdb.py                      # the shared 1,173-review sample, when present
    python examples/imdb.py --data aclImdb_v1.tar.gz
    python examples/imdb.py --quick --out /tmp/imdb_quick   # small grid and split, a minute or two
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_CSV = REPO.parent / "shared" / "data" / "imdb" / "imdb_reviews_sample.csv"

# Looked for, in order, when --data is not given.
CANDIDATES = (
    SHARED_CSV,
    Path("aclImdb_v1.tar.gz"),
    Path("aclImdb"),
    Path("IMDB Dataset.csv"),
    Path("data") / "aclImdb_v1.tar.gz",
    Path("data") / "aclImdb",
    Path("data") / "IMDB Dataset.csv",
)

HOW_TO_GET_IMDB = """\
No IMDB data found{where}.

Get one of these and pass it with --data PATH:
  1. The official Large Movie Review Dataset (Maas et al., ACL 2011), 50,000 reviews:
       https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz
     (about 84 MB; pass the .tar.gz itself - it is read without extracting - or the
     extracted aclImdb/ folder)
  2. The widely shared 50,000-review CSV "IMDB Dataset.csv" (columns review,sentiment), e.g.
       https://www.kaggle.com/datasets/lakshmi25npathi/imdb-dataset-of-50k-movie-reviews
Any layout pyro_ssl.data.load_corpus reads also works (a text file with one review per line,
a folder of .txt files).

    python examples/imdb.py --data aclImdb_v1.tar.gz
"""

MODELS = ("unigram", "kn", "hmm", "lstm", "lda", "ssl")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="The IMDB experiment under the protocol of docs/results.md.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=None,
                   help=f"IMDB data in any layout load_corpus reads (default: {SHARED_CSV} if it exists)")
    p.add_argument("--split", default="train", choices=("train", "test", "all"),
                   help="aclImdb part to read (folder or archive layouts only)")
    p.add_argument("--out", default="outputs/imdb", help="output folder")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS, help="models to run")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="training seeds (default 0 1 2; quick 0 1)")
    p.add_argument("--train", type=int, default=None, help="training reviews (default 200; quick 40)")
    p.add_argument("--val", type=int, default=None, help="validation reviews (default 100; quick 20)")
    p.add_argument("--test", type=int, default=None, help="test reviews (default 200; quick 20)")
    p.add_argument("--vocab-size", type=int, default=5000, help="vocabulary size incl. <unk>")
    p.add_argument("--T1", type=int, default=100, help="observed tokens per review")
    p.add_argument("--T2", type=int, default=70, help="scored continuation tokens per review")
    p.add_argument("--split-seed", type=int, default=1, help="seed of the review shuffle")
    p.add_argument("--ribbons", type=int, default=3, help="test reviews drawn as topic ribbons")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--quick", action="store_true", help="the quick grid and a small split (CI-sized)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    args = p.parse_args(argv)
    q = args.quick
    args.seeds = args.seeds or ([0, 1] if q else [0, 1, 2])
    args.train = args.train or (40 if q else 200)
    args.val = args.val or (20 if q else 100)
    args.test = args.test or (20 if q else 200)
    return args


def find_data(arg):
    """The data path to use, or ``None`` (with the places looked at)."""
    if arg is not None:
        path = Path(arg).expanduser()
        return (path if path.exists() else None), [path]
    for c in CANDIDATES:
        if c.exists():
            return c, list(CANDIDATES)
    return None, list(CANDIDATES)


def topic_usage_order(model, tokens, lengths, num_sweeps=2):
    """Topic ids of an SSL ordered by how many tokens the posterior paths give them."""
    paths = model.predict((tokens, lengths), num_sweeps=num_sweeps)
    counts = [0] * model.K
    for z in paths:
        for k in z:
            counts[k] += 1
    return sorted(range(model.K), key=lambda k: -counts[k]), paths


def draw_topics(model, split, out: Path, args) -> list[str]:
    """Topics figure and ribbons of the chosen SSL (training seed 0) on the test reviews;
    returns markdown lines listing the topics."""
    from pyro_ssl import plots

    tokens, lengths = split.test.padded()
    order, paths = topic_usage_order(model, tokens, lengths, 0 if args.quick else 2)
    top = model.top_words(10)
    phi = model.phi.detach().cpu()
    K = model.K
    plots.plot_topics([top[k] for k in order], out / f"topics_K{K}.png",
                      weights=[phi[k].topk(10).values.tolist() for k in order], ncols=10 if K > 20 else 5,
                      topic_ids=order, title=f"SSL K={K} (training seed 0): top words, topics by usage on test")
    for i in range(min(args.ribbons, len(paths))):
        L = int(lengths[i])
        words = split.vocab.decode(tokens[i, :L].tolist())
        path = model.predict((tokens[i : i + 1], lengths[i : i + 1]), num_sweeps=2 if args.quick else 20, seed=i)[0]
        plots.plot_topic_ribbon(words, path, out / f"topic_ribbon_{i}.png", K=K, words_per_line=17,
                                title=f"test review {int(split.indices['test'][i])}: SSL K={K} topic per word")
    lines = [f"## SSL topics (K={K}, training seed 0, by usage on the test reviews)", ""]
    lines += [f"- topic {k}: {' '.join(top[k])}" for k in order[:20]]
    return lines + ["", f"![SSL topics](topics_K{K}.png)", ""]


def main(argv=None) -> int:
    args = parse_args(argv)
    data_path, looked = find_data(args.data)
    if data_path is None:
        where = f" at {looked[0]}" if args.data is not None else " (looked at: " + ", ".join(map(str, looked)) + ")"
        print(HOW_TO_GET_IMDB.format(where=where), file=sys.stderr)
        return 2

    import torch

    from pyro_ssl.data import protocol_split, read_texts

    sys.path.insert(0, str(REPO / "experiments"))
    import protocol  # the protocol lives in experiments/, outside the package

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    t0 = time.perf_counter()
    try:
        texts, stats = read_texts(data_path, split=args.split, return_stats=True)
        split = protocol_split(texts, T1=args.T1, T2=args.T2, num_train=args.train, num_val=args.val,
                               num_test=args.test, vocab_size=args.vocab_size, seed=args.split_seed)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    fitted: dict = {}
    res = protocol.run_protocol(split, args.models, scale="quick" if args.quick else "full", seeds=args.seeds,
                                progress=not args.quiet, out_dir=out, fitted=fitted)
    command = "python examples/imdb.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    res["settings"].update(command=command, data=str(data_path), split_seed=args.split_seed,
                           reviews_read=stats.num_documents)
    protocol.write_json(res, out / "protocol.json")
    imgs = {k: os.path.relpath(v, out) for k, v in protocol.plot_results(res, out).items()}
    page = protocol.render_page(res, command=command, data=str(data_path), images={**imgs, "json": "protocol.json"})
    if ("ssl", args.seeds[0]) in fitted:
        ssl = fitted[("ssl", args.seeds[0])]
        if hasattr(ssl, "members"):  # a SnapshotEnsemble: the topics of its last snapshot
            ssl = ssl.members[-1]
        page += "\n" + "\n".join(draw_topics(ssl, split, out, args))
    (out / "results.md").write_text(page)
    print(protocol.results_table(res))
    print(f"wrote {out / 'results.md'}, protocol.json and plots to {out}/ in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
