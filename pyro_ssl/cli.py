"""The ``pyro-ssl`` command line: fit, evaluate, topics, assign, generate, report.

Examples::

    pyro-ssl fit --gensim lee_background -K 20 --epochs 30 --out lee_model
    pyro-ssl fit --gensim lee_background --no-below 3 --no-above 0.5 --stopwords -K 20 --validation 0.1 --patience 3
    pyro-ssl fit aclImdb_v1.tar.gz --vocab-size 5000 -K 50 --out imdb_model --checkpoint-dir ckpt
    pyro-ssl fit aclImdb_v1.tar.gz --vocab-size 5000 -K 50 --out imdb_model --checkpoint-dir ckpt --resume
    pyro-ssl evaluate lee_model --gensim lee_test --T1 100 --particles 200
    pyro-ssl topics lee_model --num-words 10
    pyro-ssl assign lee_model --text "the government said on tuesday ..."
    pyro-ssl generate lee_model --num 3 --length 30 --temperature 0.8
    pyro-ssl report lee_model --gensim lee_test --out report.html

Every subcommand's ``--help`` lists its options. Corpora are read with
:func:`pyro_ssl.data.load_corpus`: the aclImdb tarball or folder, the IMDB CSV, a folder of
``.txt`` files, or a text file with one document per line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from .version import __version__
from .config import (DEFAULT_THREADS, LearningConfig, add_setting_flags, add_vocab_flags, check_dir, chosen_settings,
                     chosen_vocab)
from .data import Corpus, check_text_file, gensim_corpus_texts, load_corpus, tokenize
from .distributed import fit_workers
from .estimator import SSL
from .report import write_report
from .runtime import get_threads, set_threads

__all__ = ["main", "build_parser", "DEFAULT_OUT"]

DEFAULT_OUT = "pyro-ssl-model"
"""Where ``pyro-ssl fit`` saves without ``--out`` (a numbered sibling if it exists)."""
_EVAL_PARTICLES = LearningConfig().eval_particles  # the configuration's default, not a second one


def _fraction(value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1), got {value!r}") from None
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1), got {v}")
    return v


def _positive_int(value: str) -> int:
    try:
        v = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _seeds(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in value.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be comma-separated integers, got {value!r}") from None


# ---------------------------------------------------------------------------- parser
def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars and fewer messages")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help=f"torch intra-op threads in the hot loops (default {DEFAULT_THREADS}: more threads spin against "
                        "other busy processes; use fit --workers for more cores)")
    p.add_argument("--device", default=None, help="torch device, e.g. 'cpu' or 'cuda' (default: cpu)")


def _add_corpus(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("corpus", nargs="?", default=None,
                   help="corpus path: aclImdb tarball or folder, IMDB CSV, folder of .txt files, or a text "
                        "file with one document per line" + ("" if required else " (optional here)"))
    p.add_argument("--gensim", metavar="NAME", default=None,
                   help="use a corpus bundled with gensim instead of a path: lee_background, lee_test")
    p.add_argument("--split", choices=("train", "test", "all"), default="train",
                   help="aclImdb split to read (ignored by other layouts; default train)")
    p.add_argument("--limit", type=_positive_int, default=None, help="read at most this many documents")
    p.add_argument("--min-length", type=_positive_int, default=1,
                   help="drop documents with fewer tokens than this (default 1)")
    p.add_argument("--max-length", type=_positive_int, default=None,
                   help="truncate documents to this many tokens (default: keep whole documents)")
    p.add_argument("--max-docs", type=_positive_int, default=None,
                   help="keep at most this many documents after filtering")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyro-ssl",
        description="State Space LSTM topic models with particle Gibbs (pyro-ssl).",
        epilog="Run 'pyro-ssl COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"pyro-ssl {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # fit ------------------------------------------------------------------
    p = sub.add_parser("fit", help="fit a model on a corpus and save it",
                       description="Fit a Topical SSL by particle Gibbs within stochastic EM.")
    _add_corpus(p, required=True)
    # Every vocabulary, model, sampler and learning setting, generated from pyro_ssl.config (defaults there).
    add_vocab_flags(p)
    add_setting_flags(p)
    p.add_argument("--validation", type=_fraction, default=None, metavar="FRACTION",
                   help="hold out this fraction of the documents as a validation set, scored every --eval-every "
                        "epochs (per-token held-out log likelihood); needed by --patience (default: 0.1 with "
                        "--patience, else none)")
    p.add_argument("--eval-every", type=_positive_int, default=1, help="epochs between validation scores (default 1)")
    p.add_argument("--validation-particles", type=_positive_int, default=100,
                   help="particle-filter particles for the validation score (default 100)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="model precision (default float32)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help=f"directory to save the fitted model to (default ./{DEFAULT_OUT}, numbered if it exists)")
    p.add_argument("--checkpoint-dir", metavar="DIR", default=None,
                   help="write a checkpoint here after every epoch (atomic; enables --resume)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint in --checkpoint-dir (same corpus and options required)")
    p.add_argument("--workers", type=_positive_int, default=1,
                   help="processes to fit on (torch.distributed, gloo; the same model as 1; default 1)")
    p.add_argument("--show-topics", type=int, default=10, metavar="N",
                   help="print the N most used topics after fitting (0: none; default 10)")
    _add_common(p)

    # evaluate -------------------------------------------------------------
    p = sub.add_parser("evaluate", help="held-out log likelihood and completion perplexity",
                       description="Score documents with the particle filter: per-token held-out log "
                                   "likelihood, and document-completion perplexity with --T1.")
    p.add_argument("model", help="saved model directory (from 'pyro-ssl fit --out')")
    _add_corpus(p, required=True)
    p.add_argument("--T1", type=_positive_int, default=None,
                   help="observed prefix length for completion perplexity (documents longer than T1 are used)")
    p.add_argument("--T2", type=_positive_int, default=None,
                   help="held-out continuation length (default: the rest of each document)")
    p.add_argument("--particles", type=_positive_int, default=_EVAL_PARTICLES,
                   help=f"particle-filter particles (default {_EVAL_PARTICLES}, the eval_particles setting)")
    p.add_argument("--seeds", type=_seeds, default=(0, 1, 2), help="comma-separated filter seeds (default 0,1,2)")
    p.add_argument("--workers", type=_positive_int, default=1,
                   help="processes scoring the documents, each an even share on one thread (the same estimates as 1; "
                        "default 1, the eval_workers setting)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    _add_common(p)

    # topics ---------------------------------------------------------------
    p = sub.add_parser("topics", help="print the top words of every topic",
                       description="Print the most probable words of each topic, most used topics first "
                                   "(the order of show_topics and the report).")
    p.add_argument("model", help="saved model directory")
    p.add_argument("--num-words", type=_positive_int, default=10, help="words per topic (default 10)")
    p.add_argument("--num-topics", type=int, default=-1, help="topics to print (default all)")
    p.add_argument("--weights", action="store_true", help="print probabilities as well (gensim style)")
    p.add_argument("--json", action="store_true", help="print the topics as JSON")
    _add_common(p)

    # assign ---------------------------------------------------------------
    p = sub.add_parser("assign", help="assign a topic to every word of new documents",
                       description="Posterior topic of every word (particle filter then conditional-SMC "
                                   "sweeps). Words outside the vocabulary are read as <unk>.")
    p.add_argument("model", help="saved model directory")
    p.add_argument("file", nargs="?", default=None, help="text file with one document per line")
    p.add_argument("--text", action="append", default=None,
                   help="a document given inline (repeat for several)")
    p.add_argument("--sweeps", type=int, default=20, help="conditional-SMC sweeps after the filter (default 20)")
    p.add_argument("--particles", type=_positive_int, default=None, help="particles (default: the model's)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--json", action="store_true", help="print [[word, topic], ...] per document as JSON lines")
    _add_common(p)

    # generate -------------------------------------------------------------
    p = sub.add_parser("generate", help="sample topic and word sequences from a model",
                       description="Sample documents: topics from the LSTM prior, words from the topics.")
    p.add_argument("model", help="saved model directory")
    p.add_argument("--num", type=_positive_int, default=3, help="number of sequences (default 3)")
    p.add_argument("--length", type=_positive_int, default=30, help="tokens per sequence (default 30)")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="divides the logits of topics and words: < 1 sharper, > 1 flatter (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--words-only", action="store_true", help="print only the words, not word/topic pairs")
    p.add_argument("--json", action="store_true", help="print {'words': [...], 'topics': [...]} JSON lines")
    _add_common(p)

    # report ---------------------------------------------------------------
    p = sub.add_parser("report", help="write a self-contained HTML report of a model",
                       description="Write one HTML page (figures inline): topics and their top words, documents "
                                   "coloured by topic, training and validation curves, mixing diagnostics, and a "
                                   "comparison table when given.")
    p.add_argument("model", help="saved model directory")
    _add_corpus(p, required=False)
    p.add_argument("--out", metavar="FILE", default="report.html", help="the HTML file to write (default report.html)")
    p.add_argument("--num-docs", type=int, default=5, help="documents of the corpus to colour by topic (default 5)")
    p.add_argument("--num-words", type=_positive_int, default=10, help="words per topic (default 10)")
    p.add_argument("--comparison", metavar="JSON", default=None,
                   help="a comparison table to include (experiments/comparison.py's results.json)")
    p.add_argument("--title", default=None, help="page title")
    p.add_argument("--seed", type=int, default=0, help="random seed of the documents' topic paths (default 0)")
    _add_common(p)
    return parser


# ---------------------------------------------------------------------------- helpers
def _say(args, *msg) -> None:
    if not args.quiet:
        print(*msg, file=sys.stderr)


def _load_texts_corpus(args, vocab=None):
    """The corpus of ``args`` (path or ``--gensim``), filtered and truncated."""
    if (args.corpus is None) == (args.gensim is None):
        raise ValueError("give a corpus path or --gensim NAME (exactly one)")
    # Vocabulary flags exist on 'fit' only; other commands encode with the model's vocabulary.
    v = chosen_vocab(args)
    kw = dict(vocab_size=v.vocab_size, min_count=v.min_count, no_below=v.no_below, no_above=v.no_above,
              keep_n=v.keep_n, stopwords=v.stopwords)
    if args.gensim is not None:
        texts = gensim_corpus_texts(args.gensim)
        if args.limit:
            texts = texts[: args.limit]
        corpus = Corpus.from_texts(texts, vocab=vocab, **kw)
    else:
        corpus = load_corpus(args.corpus, vocab=vocab, split=args.split, limit=args.limit, **kw)
    corpus = corpus.filter_min_length(max(args.min_length, 1))
    if args.max_length:
        corpus = corpus.truncate(args.max_length)
    if args.max_docs:
        corpus = corpus.take(min(args.max_docs, len(corpus)))
    if len(corpus) == 0:
        raise ValueError(f"no documents with at least {args.min_length} tokens")
    return corpus


def _load_model(args):
    return SSL.load(args.model, device=args.device)


def _default_out() -> Path:
    """``./pyro-ssl-model``, or the first free ``./pyro-ssl-model-N``: a fit is never lost, nothing is overwritten."""
    path, n = Path(DEFAULT_OUT), 1
    while path.exists():
        path, n = Path(f"{DEFAULT_OUT}-{n}"), n + 1
    return path


def _pairs(words, topics) -> str:
    return " ".join(f"{w}/{k}" for w, k in zip(words, topics))


# ---------------------------------------------------------------------------- commands
def cmd_fit(args) -> int:
    kwargs = chosen_settings(args)
    if args.resume and not args.checkpoint_dir:
        raise ValueError("--resume needs --checkpoint-dir")
    model = SSL(device=args.device, dtype=getattr(torch, args.dtype), **kwargs)  # settings checked first
    for flag, d in (("--out", args.out), ("--checkpoint-dir", args.checkpoint_dir)):
        if d is not None:
            check_dir(flag, d)  # before fitting, not after it
    corpus = _load_texts_corpus(args)
    _say(args, f"corpus: {len(corpus)} documents, {corpus.num_tokens} tokens, V={corpus.V}")
    fraction = args.validation
    if fraction is None and model.config.learning.patience:
        fraction = 0.1
        _say(args, "--patience without --validation: holding out 10% of the documents for validation")
    valid = None
    if fraction is not None:
        corpus, valid = corpus.split(test_size=fraction, seed=model.seed)
        _say(args, f"validation: {len(valid)} documents held out, scored every {args.eval_every} epoch(s)")
    out = Path(args.out) if args.out else _default_out()
    try:
        if args.workers > 1:
            if args.device not in (None, "cpu"):
                raise ValueError("--workers starts CPU processes (gloo); for GPUs launch python -m pyro_ssl.distributed "
                                 "with torchrun")
            model = fit_workers(corpus, args.workers, dtype=getattr(torch, args.dtype), progress=not args.quiet,
                                checkpoint_dir=args.checkpoint_dir, resume=args.resume, eval_data=valid,
                                eval_every=args.eval_every, eval_particles=args.validation_particles, **kwargs)
        else:
            model.fit(corpus, progress=not args.quiet, eval_data=valid, eval_every=args.eval_every,
                      eval_particles=args.validation_particles, checkpoint_dir=args.checkpoint_dir,
                      resume=args.resume)
    except KeyboardInterrupt:
        if args.checkpoint_dir:
            print(f"interrupted; continue with the same command and --resume (checkpoint in {args.checkpoint_dir})",
                  file=sys.stderr)
        raise
    last = model.history[-1] if model.history else {}
    if last:
        total = sum(e.get("seconds", 0.0) for e in model.history)
        _say(args, f"fitted {len(model.history)} epochs in {total:.1f} s; "
                   f"log joint per token {last['log_joint_per_token']:.4f}")
    if model.best_epoch is not None:
        _say(args, f"best validation epoch {model.best_epoch} (restored)")
    if args.show_topics:
        for k, words in model.show_topics(args.show_topics, 8):
            print(f"topic {k:3d}: {words}")
    path = model.save(out)
    # stdout, not the --quiet-able stderr: the one line a script needs to find the model
    print(f"saved to {path}" + ("" if args.out else " (no --out given; pass --out DIR to choose)"))
    return 0


def cmd_evaluate(args) -> int:
    from tqdm.auto import tqdm

    if not args.seeds:
        raise ValueError("--seeds: seeds must be a non-empty comma-separated list of integers, e.g. 0,1,2")
    model = _load_model(args)
    if model.vocab is None:
        raise ValueError(f"{args.model}: the model has no vocabulary; evaluate token ids from Python instead")
    corpus = _load_texts_corpus(args, vocab=model.vocab)
    results: dict = {"documents": len(corpus), "tokens": corpus.num_tokens, "particles": args.particles,
                     "seeds": list(args.seeds)}
    tokens, lengths = corpus.padded()
    model.config.learning = dataclasses.replace(model.config.learning, eval_workers=args.workers)
    # One process: a call per seed, for the progress bar. Several: one call for every seed, so the
    # processes start once.
    per_call = [(s,) for s in args.seeds] if args.workers == 1 else [tuple(args.seeds)]
    bar = dict(disable=args.quiet or len(per_call) == 1, unit="seed")
    if args.workers > 1:
        _say(args, f"scoring on {args.workers} processes")
    vals = []
    for seeds in tqdm(per_call, desc="held-out log lik", **bar):
        vals += model.score((tokens, lengths), num_particles=args.particles, seeds=seeds).values
    results["heldout_log_lik_per_token"] = _mean_std(vals)
    if args.T1 is not None:
        keep = corpus.lengths > args.T1
        if not bool(keep.any()):
            raise ValueError(f"no document is longer than T1={args.T1} tokens")
        sub = corpus[keep.nonzero().flatten()]
        if args.T2:
            sub = sub.truncate(args.T1 + args.T2)
        ct, cl = sub.padded()
        ppl = []
        for seeds in tqdm(per_call, desc="completion ppl", **bar):
            ppl += model.completion_perplexity(ct, cl, args.T1, num_particles=args.particles, seeds=seeds).values
        results["completion_perplexity"] = _mean_std(ppl)
        results["completion_documents"] = len(sub)
        results["completion_heldout_tokens"] = int((cl - args.T1).clamp_min(0).sum())
        results["T1"] = args.T1
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        ll = results["heldout_log_lik_per_token"]
        print(f"documents: {results['documents']}  tokens: {results['tokens']}  particles: {args.particles}  "
              f"seeds: {len(args.seeds)}")
        print(f"held-out log likelihood per token: {ll['mean']:.4f} ± {ll['std']:.4f}")
        print("(± is the sd over particle-filter seeds: the evaluator's Monte Carlo error for this one "
              "fitted model, not the spread over training seeds)")
        if "completion_perplexity" in results:
            c = results["completion_perplexity"]
            print(f"completion perplexity (T1={args.T1}, {results['completion_documents']} documents, "
                  f"{results['completion_heldout_tokens']} held-out tokens): {c['mean']:.2f} ± {c['std']:.2f}")
    return 0


def _mean_std(vals) -> dict:
    import statistics

    return {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
            "values": list(vals)}


def cmd_topics(args) -> int:
    model = _load_model(args)
    if args.weights:
        topics = model.show_topics(args.num_topics, args.num_words)
        if args.json:
            print(json.dumps([{"topic": k, "words": w} for k, w in topics], indent=2))
        else:
            for k, w in topics:
                print(f"topic {k:3d}: {w}")
        return 0
    top = model.top_words(args.num_words)
    order = model.topic_order()  # most used first, as with --weights, show_topics and the report
    ids = order[: args.num_topics] if args.num_topics > 0 else order
    if args.json:
        print(json.dumps([{"topic": k, "words": top[k]} for k in ids], indent=2))
    else:
        for k in ids:
            print(f"topic {k:3d}: {' '.join(top[k])}")
    return 0


def cmd_assign(args) -> int:
    from tqdm.auto import tqdm

    model = _load_model(args)
    if model.vocab is None:
        raise ValueError(f"{args.model}: the model has no vocabulary; assign topics to token ids from Python")
    texts = list(args.text or [])
    if args.file:
        path = check_text_file(args.file)  # an executable is not read for minutes
        texts += [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    if not texts:
        raise ValueError("give a text file or --text")
    docs = [tokenize(t) for t in texts]
    todo = [i for i, words in enumerate(docs) if words]
    topics: dict[int, list[int]] = {}
    chunks = [todo[i : i + 256] for i in range(0, len(todo), 256)]
    for c, chunk in enumerate(tqdm(chunks, desc="assign", disable=args.quiet or len(chunks) < 2, unit="batch")):
        ids = [model.vocab.encode(docs[i]) for i in chunk]
        paths = model.predict(ids, num_sweeps=args.sweeps, num_particles=args.particles, seed=args.seed + c)
        topics.update(zip(chunk, paths))
    for i, words in enumerate(docs):
        z = topics.get(i, [])
        if args.json:
            print(json.dumps([[w, int(k)] for w, k in zip(words, z)]))
        else:
            print(_pairs(words, z))
    return 0


def cmd_generate(args) -> int:
    if not (args.temperature > 0 and args.temperature != float("inf")):
        raise ValueError(f"--temperature must be a finite number > 0, got {args.temperature}")
    model = _load_model(args)
    z, w = model.sample(args.num, args.length, temperature=args.temperature, seed=args.seed)
    itos = getattr(model.vocab, "itos", None)
    for zi, wi in zip(z.tolist(), w.tolist()):
        words = [itos[i] if itos else str(i) for i in wi]
        if args.json:
            print(json.dumps({"words": words, "topics": zi}))
        elif args.words_only:
            print(" ".join(words))
        else:
            print(_pairs(words, zi))
    return 0


def cmd_report(args) -> int:
    model = _load_model(args)
    docs = None
    if args.corpus is not None or args.gensim is not None:
        if model.vocab is None:
            raise ValueError(f"{args.model}: the model has no vocabulary to encode the corpus with")
        docs = _load_texts_corpus(args, vocab=model.vocab)
    if args.comparison is not None and not Path(args.comparison).is_file():
        raise FileNotFoundError(f"{args.comparison}: no such file")
    path = write_report(model, args.out, docs=docs, num_docs=args.num_docs, num_words=args.num_words,
                        comparison=args.comparison, title=args.title, seed=args.seed)
    print(f"report written to {path}")
    return 0


_COMMANDS = {"fit": cmd_fit, "evaluate": cmd_evaluate, "topics": cmd_topics, "assign": cmd_assign,
             "generate": cmd_generate, "report": cmd_report}


def main(argv=None) -> int:
    """Run the command line; returns the exit status (0 on success, 2 on a usage or data error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = get_threads()
    if args.threads:
        set_threads(args.threads)
    try:
        return _COMMANDS[args.command](args)
    except (OSError, ValueError, TypeError) as e:
        print(f"pyro-ssl {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        set_threads(previous)


if __name__ == "__main__":
    sys.exit(main())
