"""Quickstart: fit a Topical SSL on the Lee news corpus that ships with gensim (no download).

Filters the vocabulary as gensim users do (gensim's stopwords and punctuation out, words in
fewer than 3 or more than half of the documents out), fits with a validation set (early
stopping with patience), prints the learned topics and the held-out document-completion
perplexity next to a unigram model's, and writes the figures and a one-page HTML report into
an output folder. About three minutes on one CPU thread.

    python examples/quickstart.py [--epochs 30] [--topics 20] [--out quickstart_output]
"""

import argparse
import time
from pathlib import Path

import torch

import pyro_ssl
from pyro_ssl import plots
from pyro_ssl.baselines import UnigramLM
from pyro_ssl.data import Corpus, gensim_corpus_texts, tokenize
from pyro_ssl.evaluation import perplexity


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topics", type=int, default=20, help="number of topics K")
    parser.add_argument("--epochs", type=int, default=30, help="stochastic-EM epochs (at most; early stopping may end sooner)")
    parser.add_argument("--prefix", type=int, default=40, help="observed tokens of each test document")
    parser.add_argument("--out", default="quickstart_output", help="folder for the figures and the report")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    out = Path(args.out)

    texts = [t for t in gensim_corpus_texts("lee_background") if len(tokenize(t)) >= args.prefix + 20]
    # Split by document first, then build the vocabulary from the training documents only.
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(args.seed)).tolist()
    n_test = round(0.15 * len(texts))
    # Content words only: without the filter the most probable words of every topic are
    # "the", "." and ",". Filtering removes the dropped words from the text (as gensim's
    # doc2bow ignores them), so documents get shorter.
    train = Corpus.from_texts([texts[i] for i in order[n_test:]], vocab_size=2000, no_below=3, no_above=0.5,
                              stopwords=True)
    test = Corpus.from_texts([texts[i] for i in order[:n_test]], vocab=train.vocab)
    train = train.filter_min_length(args.prefix + 20).truncate(150)
    test = test.filter_min_length(args.prefix + 20).truncate(150)
    train, valid = train.split(test_size=0.1, seed=args.seed)
    print(f"Lee corpus: {len(train)} training / {len(valid)} validation / {len(test)} test documents, "
          f"V={train.V} (from training documents only), {train.num_tokens} training tokens")

    t0 = time.perf_counter()
    # The validation documents' completion perplexity, every 2 epochs with 50 filter particles,
    # decides early stopping: the fit stops after 4 evaluations without improvement and keeps
    # the best epoch's state. The test documents are only scored at the end.
    model = pyro_ssl.fit(train, K=args.topics, epochs=args.epochs, seed=args.seed, patience=4,
                         eval_data=(*valid.padded(), args.prefix), eval_every=2, eval_particles=50,
                         progress=not args.quiet)
    print(f"fitted {len(model.history)} epochs in {time.perf_counter() - t0:.1f} s "
          f"(best validation epoch {model.best_epoch})\n")
    print("Topics (most used first):")
    top = model.top_words(8)
    for k in model.topic_order()[:10]:
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

    # Figures and the report (pyro_ssl.plots draws headless; the report inlines its figures).
    order = model.topic_order()[:10]
    phi = model.phi
    doc = test[0][:48]
    files = [
        plots.plot_training_curves({f"SSL K={args.topics}": model}, ["log_joint_per_token", "completion_ppl"],
                                   out / "training_curves.png", title="training and validation"),
        plots.plot_mixing(model, out / "mixing.png", title="sampler mixing by position"),
        plots.plot_topics([top[k] for k in order], out / "topics.png", topic_ids=order, K=model.K,
                          weights=[phi[k].topk(8).values.tolist() for k in order],
                          title="the 10 most used topics"),
        plots.plot_topic_ribbon(model.vocab.decode(doc), model.predict([doc], num_sweeps=10)[0],
                                out / "topic_ribbon.png", K=model.K, title="a test document, words coloured by topic"),
        model.report(out / "report.html", docs=test, comparison={
            f"SSL K={args.topics}": {"completion perplexity": est.mean, "sd over seeds": est.std},
            "unigram": {"completion perplexity": uni_ppl, "sd over seeds": 0.0}}),
    ]
    print("\nWritten:")
    for f in files:
        print(f"  {f}")


if __name__ == "__main__":
    # One intra-op thread: the sweep's ops are small, and on a shared 2-core machine two
    # OpenMP threads spin against any other busy process (issue 13 measured 30x slow-downs).
    torch.set_num_threads(1)
    main()
