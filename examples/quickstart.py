"""Quickstart: fit a Topical SSL on the Lee news corpus that ships with gensim (no download).

Prints the learned topics and the held-out document-completion perplexity next to a unigram
model's on the same tokens. About two minutes on 2 CPU cores.

    python examples/quickstart.py [--epochs 20] [--topics 20]
"""

import argparse
import time

import torch

import pyro_ssl
from pyro_ssl.baselines import UnigramLM
from pyro_ssl.data import Corpus, gensim_corpus_texts, tokenize
from pyro_ssl.evaluation import perplexity


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topics", type=int, default=20, help="number of topics K")
    parser.add_argument("--epochs", type=int, default=20, help="stochastic-EM epochs")
    parser.add_argument("--prefix", type=int, default=100, help="observed tokens of each test document")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    texts = [t for t in gensim_corpus_texts("lee_background") if len(tokenize(t)) >= args.prefix + 20]
    # split by document first, then build the vocabulary from the training documents only
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(args.seed)).tolist()
    n_test = round(0.15 * len(texts))
    train = Corpus.from_texts([texts[i] for i in order[n_test:]], vocab_size=2000).truncate(200)
    test = Corpus.from_texts([texts[i] for i in order[:n_test]], vocab=train.vocab).truncate(200)
    print(f"Lee corpus: {len(train)} training / {len(test)} test documents, V={train.V} (from training "
          f"documents only), {train.num_tokens} training tokens")

    t0 = time.perf_counter()
    model = pyro_ssl.fit(train, K=args.topics, epochs=args.epochs, seed=args.seed, progress=not args.quiet)
    print(f"fitted in {time.perf_counter() - t0:.1f} s\n")
    print("Topics (most used first):")
    top = model.top_words(8)
    for k, _ in model.show_topics(num_topics=10):
        print(f"  topic {k:2d}: {' '.join(top[k])}")

    tokens, lengths = test.padded()
    est = model.completion_perplexity(tokens, lengths, T1=args.prefix, num_particles=100, seeds=(0, 1, 2))
    uni = UnigramLM(beta=0.1).fit([train[i] for i in range(len(train))], train.V)
    held = (lengths - args.prefix).clamp_min(0).sum()
    uni_ppl = perplexity(float(uni.completion_log_likelihood(tokens, lengths, args.prefix).sum()), int(held))
    print(f"\nHeld-out completion perplexity (first {args.prefix} tokens observed, {int(held)} tokens scored):")
    print(f"  SSL K={args.topics}: {est.mean:.2f} ± {est.std:.2f} (± = sd over {len(est.values)} particle-filter "
          f"seeds, the evaluator's Monte Carlo error for this one training seed, not the spread over "
          f"training seeds; docs/results.md reports both)")
    print(f"  unigram    : {uni_ppl:.2f} (deterministic)")


if __name__ == "__main__":
    # One intra-op thread: the sweep's ops are small, and on a shared 2-core machine two
    # OpenMP threads spin against any other busy process (issue 13 measured 30x slow-downs).
    torch.set_num_threads(1)
    main()
