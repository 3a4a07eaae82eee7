"""The comparison harness (experiments/comparison.py) on a tiny synthetic completion split (fast)."""

import json
import math
import random
import sys
from pathlib import Path

import pytest
import torch

from pyro_ssl.baselines import UnigramLM, perplexity
from pyro_ssl.data import Corpus, completion_split

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from comparison import ComparisonResult, compare, main, reference_texts  # noqa: E402

PETS = "cat dog pet food bark meow".split()
MONEY = "stock market price trade bank money".split()
FAST_SSL = dict(hidden_size=8, num_particles=4, batch_size=16)


def make_texts(n=14, length=36, seed=0):
    rng = random.Random(seed)
    out = []
    for d in range(n):
        words = []
        for t in range(length):
            theme = PETS if (t // 6 + d) % 2 else MONEY
            words.append(rng.choice(theme) if rng.random() > 0.05 else "rare%d" % rng.randint(0, 30))
        out.append(" ".join(words))
    return out


@pytest.fixture(scope="module")
def split():
    corpus = Corpus.from_texts(make_texts(), vocab_size=16)  # rare words become <unk>
    return completion_split(corpus, T1=24, T2=10, num_docs=12, seed=0)


@pytest.fixture(scope="module")
def result(split, tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp")
    res = compare(split, ["ssl", "unigram"], K_values=[2], seeds=[0, 1], ssl_epochs=2, eval_particles=30,
                  curve_particles=10, ssl_kwargs=FAST_SSL, progress=False, out_dir=out, on_error="raise")
    return res, out


def test_runs_and_scores(result, split):
    res, _ = result
    assert [(r.model, r.K, r.seed) for r in res.runs] == [("ssl", 2, 0), ("ssl", 2, 1), ("unigram", None, None)]
    held = split.T2 * len(split.train)
    for r in res.runs:
        assert r.error is None and r.num_tokens == held
        assert 1.0 < r.ppl < split.train.V * 2
    # the unigram row is exactly the baseline scored by hand on the same split
    uni = UnigramLM().fit(split.train.tolist(), split.train.V)
    ll = uni.completion_log_likelihood(split.eval_tokens, split.eval_lengths, split.T1).sum()
    assert res.runs[2].ppl == pytest.approx(perplexity(float(ll), held))
    ssl = res.runs[0]
    assert ssl.epochs == 2 and len(ssl.curve) == 2 and ssl.curve_key == "completion_ppl"
    assert ssl.seconds_per_epoch > 0 and ssl.train_seconds > 0 and ssl.eval_seconds > 0
    assert set(ssl.topic_quality) == {"c_npmi", "c_v", "diversity"}
    assert 0 < ssl.topic_quality["diversity"] <= 1
    assert len(ssl.top_words) == 2 and all(len(w) == 10 for w in ssl.top_words)  # kept: top 10
    assert ("ssl", 2, 0) in res.models and ("unigram", None, None) in res.models
    # the final score is the particle filter with eval_particles on the fitted model
    m = res.models[("ssl", 2, 0)]
    est = m.completion_perplexity(split.eval_tokens, split.eval_lengths, split.T1, num_particles=30, seeds=(0,))
    assert ssl.ppl == pytest.approx(est.mean)


def test_summary_markdown_json_plot(result, tmp_path):
    res, out = result
    rows = res.summary()
    assert [(r["model"], r["n"]) for r in rows] == [("ssl", 2), ("unigram", 1)]
    ssl_vals = [r.ppl for r in res.runs[:2]]
    assert rows[0]["ppl_mean"] == pytest.approx(sum(ssl_vals) / 2)
    assert rows[0]["ppl_sd"] == pytest.approx(float(torch.tensor(ssl_vals, dtype=torch.float64).std()))
    md = res.to_markdown()
    assert "| SSL | 2 |" in md and "| unigram | – |" in md and "±" in md
    for name in ("results.md", "results.json", "perplexity.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 100
    data = json.loads((out / "results.json").read_text())
    assert data["settings"]["T1"] == 24 and len(data["runs"]) == 3
    back = ComparisonResult.from_json(out / "results.json")
    assert back.summary()[0]["ppl_mean"] == pytest.approx(rows[0]["ppl_mean"])
    png = back.plot(tmp_path / "p.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_model_is_scored_through_the_language_model_interface(split):
    """One loop: SSL and baselines are scored by completion_log_likelihood; extras come from
    the fitted model's attributes (curve without evaluation: none; LSTM: validation curve)."""
    res = compare(split, ["ssl", "lstm", "lda"], K_values=[2], seeds=[3], ssl_epochs=1, eval_particles=10,
                  eval_every=0, ssl_kwargs=FAST_SSL, lstm_kwargs=dict(hidden_size=8, max_epochs=2),
                  lda_kwargs=dict(passes=2), progress=False, topic_quality=False, on_error="raise")
    held = split.T2 * len(split.train)
    for r in res.runs:
        m = res.models[(r.model, r.K, r.seed)]
        ll = m.completion_log_likelihood(split.eval_tokens, split.eval_lengths, split.T1)
        assert r.ppl == pytest.approx(perplexity(float(ll.sum()), held))
        assert r.topic_quality is None
    ssl, lstm, lda = res.runs
    assert ssl.curve is None and ssl.epochs == 1 and ssl.extra["params"]["seed"] == 3
    assert len(ssl.top_words) == 2 and all(len(w) == 10 for w in ssl.top_words)
    assert lstm.curve_key == "val_ppl" and [e for e, _ in lstm.curve] == [1, 2][: lstm.epochs]
    assert 1 <= lstm.extra["best_epoch"] <= lstm.epochs and lstm.seconds_per_epoch > 0
    assert lda.epochs == 2 and lda.curve is None and len(lda.top_words) == 2


def test_reference_texts_decode_training_prefixes(split):
    texts = reference_texts(split)
    assert [" ".join(t) for t in texts] == split.train.to_texts()
    assert all(len(t) == split.T1 for t in texts)


def test_failures_are_recorded_or_raised(split):
    with pytest.warns(RuntimeWarning, match="failed"):
        res = compare(split, ["hmm", "unigram"], K_values=[2], seeds=[0], hmm_kwargs={"beta": -1.0},
                      progress=False)
    assert res.runs[0].error and "beta" in res.runs[0].error and math.isnan(res.runs[0].ppl)
    assert res.runs[1].error is None
    assert "1 failed" in res.to_markdown() and "Failed runs" in res.to_markdown()
    with pytest.raises(ValueError):
        compare(split, ["hmm"], K_values=[2], seeds=[0], hmm_kwargs={"beta": -1.0}, progress=False,
                on_error="raise")
    with pytest.raises(ValueError, match="unknown model"):
        compare(split, ["gpt"], progress=False)


def test_cli(tmp_path, capsys):
    data = tmp_path / "docs.txt"
    data.write_text("\n".join(make_texts(n=10, length=30, seed=1)) + "\n")
    rc = main(["--data", str(data), "--models", "unigram", "hmm", "--K", "2", "--seeds", "0", "1",
               "--docs", "8", "--T1", "20", "--T2", "10", "--vocab-size", "20", "--out", str(tmp_path / "o"),
               "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| HMM | 2 |" in printed and "| unigram |" in printed
    assert (tmp_path / "o" / "results.json").is_file() and (tmp_path / "o" / "perplexity.png").is_file()


def test_kneser_ney_is_a_deterministic_model(split):
    res = compare(split, ["kn", "unigram"], K_values=[2], seeds=[0, 1], progress=False, topic_quality=False,
                  on_error="raise")
    assert [(r.model, r.seed) for r in res.runs] == [("kn", None), ("unigram", None)]
    from pyro_ssl.baselines import KneserNey
    kn = KneserNey().fit(split.train.tolist(), split.train.V)
    ll = kn.completion_log_likelihood(split.eval_tokens, split.eval_lengths, split.T1).sum()
    assert res.runs[0].ppl == pytest.approx(perplexity(float(ll), split.T2 * len(split.train)))
