"""The pyro-ssl command line on a tiny corpus: fit, evaluate, topics, assign, generate, --help."""

import argparse
import json
import random

import pytest

from pyro_ssl.cli import build_parser, main
from pyro_ssl import SSL
from pyro_ssl.io import CHECKPOINT_FILE

load_model = SSL.load

A = "the cat sat on the mat and the dog ran in the park".split()
B = "stocks fell as markets closed lower on the news of rates".split()
FAST = ["-K", "2", "--hidden-size", "8", "--particles", "4", "--batch-size", "16", "--quiet"]


def write_corpus(path, n=24, seed=0):
    rng = random.Random(seed)
    lines = [" ".join(rng.choice(A if i % 2 else B) for _ in range(rng.randint(8, 16))) for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return lines


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    write_corpus(d / "docs.txt")
    assert main(["fit", str(d / "docs.txt"), "--epochs", "2", "--out", str(d / "model"), *FAST]) == 0
    return d


def test_fit_saves_a_model(workdir, capsys):
    m = load_model(workdir / "model")
    assert m.K == 2 and len(m.history) == 2 and m.vocab is not None
    assert m.config.model.hidden_size == 8 and m.config.sampler.num_particles == 4


def test_fit_text_folder_with_checkpoint_and_resume(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the first fit has no --out: it saves to ./pyro-ssl-model
    folder = tmp_path / "docs"
    folder.mkdir()
    for i, line in enumerate(write_corpus(tmp_path / "all.txt", n=12, seed=1)):
        (folder / f"{i:02d}.txt").write_text(line)
    ck = tmp_path / "ck"
    args = ["fit", str(folder), "--epochs", "1", "--checkpoint-dir", str(ck), "--show-topics", "2", *FAST]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("topic") == 2
    assert (ck / CHECKPOINT_FILE).is_file()
    assert main(args[:2] + ["--epochs", "2"] + args[4:] + ["--resume", "--out", str(tmp_path / "m")]) == 0
    assert len(load_model(tmp_path / "m").history) == 2
    # a different corpus is refused with a clear message and exit status 2
    write_corpus(tmp_path / "other.txt", n=12, seed=5)
    bad = ["fit", str(tmp_path / "other.txt"), "--epochs", "2", "--checkpoint-dir", str(ck), "--resume", *FAST]
    assert main(bad) == 2
    assert "different training data" in capsys.readouterr().err


def test_fit_csv_layout(tmp_path):
    lines = write_corpus(tmp_path / "x.txt", n=10, seed=2)
    rows = ["review,sentiment"] + [f'"{line}",{"positive" if i % 2 else "negative"}' for i, line in enumerate(lines)]
    (tmp_path / "reviews.csv").write_text("\n".join(rows) + "\n")
    assert main(["fit", str(tmp_path / "reviews.csv"), "--epochs", "1", "--max-length", "6", "--max-docs", "8",
                 "--out", str(tmp_path / "m"), *FAST]) == 0
    m = load_model(tmp_path / "m")
    assert m.history[0]["update_rate"].__len__() == 6


def test_fit_gensim_corpus(tmp_path, capsys):
    assert main(["fit", "--gensim", "lee_background", "--limit", "20", "--max-length", "20", "--vocab-size", "300",
                 "--epochs", "1", "--out", str(tmp_path / "lee"), "--show-topics", "0", *FAST]) == 0
    m = load_model(tmp_path / "lee")
    assert m.V == 300 and len(m.history) == 1
    assert main(["evaluate", str(tmp_path / "lee"), "--gensim", "lee_test", "--limit", "5", "--max-length", "20",
                 "--T1", "10", "--particles", "8", "--seeds", "0", "--quiet"]) == 0
    assert "completion perplexity (T1=10, 5 documents" in capsys.readouterr().out


def test_evaluate(workdir, capsys):
    assert main(["evaluate", str(workdir / "model"), str(workdir / "docs.txt"), "--T1", "5", "--particles", "16",
                 "--seeds", "0,1", "--json", "--quiet"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["documents"] == 24 and res["seeds"] == [0, 1]
    ll = res["heldout_log_lik_per_token"]
    assert ll["mean"] < 0 and len(ll["values"]) == 2
    assert res["completion_perplexity"]["mean"] > 1 and res["completion_heldout_tokens"] > 0
    assert main(["evaluate", str(workdir / "model"), str(workdir / "docs.txt"), "--particles", "8", "--quiet"]) == 0
    assert "held-out log likelihood per token" in capsys.readouterr().out


def test_evaluate_on_two_processes_gives_the_same_scores(workdir, capsys):
    args = ["evaluate", str(workdir / "model"), str(workdir / "docs.txt"), "--T1", "5", "--particles", "16",
            "--seeds", "0,1", "--json", "--quiet"]
    assert main(args) == 0
    one = json.loads(capsys.readouterr().out)
    assert main(args + ["--workers", "2"]) == 0
    two = json.loads(capsys.readouterr().out)
    for key in ("heldout_log_lik_per_token", "completion_perplexity"):
        assert two[key]["values"] == pytest.approx(one[key]["values"], rel=1e-6), key


def test_topics(workdir, capsys):
    assert main(["topics", str(workdir / "model"), "--num-words", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(len(ln.split(":")[1].split()) == 4 for ln in lines)
    assert main(["topics", str(workdir / "model"), "--weights", "--num-words", "3", "--json"]) == 0
    topics = json.loads(capsys.readouterr().out)
    assert len(topics) == 2 and topics[0]["words"].count("*") == 3


def test_assign(workdir, tmp_path, capsys):
    assert main(["assign", str(workdir / "model"), "--text", "the cat sat on a zebra", "--text", "markets fell",
                 "--sweeps", "2", "--quiet"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    pairs = [p.rsplit("/", 1) for p in lines[0].split()]
    assert [w for w, _ in pairs] == ["the", "cat", "sat", "on", "a", "zebra"]
    assert all(k in ("0", "1") for _, k in pairs)
    (tmp_path / "new.txt").write_text("the dog ran\n\nstocks closed lower\n")
    assert main(["assign", str(workdir / "model"), str(tmp_path / "new.txt"), "--json", "--quiet"]) == 0
    docs = [json.loads(ln) for ln in capsys.readouterr().out.strip().splitlines()]
    assert len(docs) == 3 and docs[1] == [] and [w for w, _ in docs[2]] == ["stocks", "closed", "lower"]


def test_generate(workdir, capsys):
    assert main(["generate", str(workdir / "model"), "--num", "3", "--length", "7", "--temperature", "0.5",
                 "--seed", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all(len(ln.split()) == 7 and "/" in ln for ln in lines)
    assert main(["generate", str(workdir / "model"), "--num", "3", "--length", "7", "--temperature", "0.5",
                 "--seed", "1", "--words-only"]) == 0
    words = capsys.readouterr().out.strip().splitlines()
    assert words == [" ".join(p.rsplit("/", 1)[0] for p in ln.split()) for ln in lines]  # same seed, same draw
    assert main(["generate", str(workdir / "model"), "--temperature", "0"]) == 2


def test_errors_are_clear(tmp_path, capsys):
    assert main(["topics", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["fit", "--epochs", "1", *FAST]) == 2
    assert "corpus path or --gensim" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit", "x.txt", "--ancestor-lag", "soon"])


def test_help_documents_every_option(capsys):
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subparsers.choices) == {"fit", "evaluate", "topics", "assign", "generate", "report"}
    for name, sub in [("pyro-ssl", parser), *subparsers.choices.items()]:
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)
    for cmd in subparsers.choices:
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
    out = capsys.readouterr().out
    for option in ("--checkpoint-dir", "--resume", "--temperature", "--T1", "--gensim", "--quiet", "--ancestor-lag",
                   "--no-below", "--no-above", "--keep-n", "--stopwords", "--patience", "--validation", "--comparison"):
        assert option in out


def test_fit_with_workers_gives_the_one_process_model(workdir, tmp_path):
    import torch

    assert main(["fit", str(workdir / "docs.txt"), "--epochs", "2", "--workers", "2", "--out", str(tmp_path / "two"),
                 *FAST]) == 0
    one, two = load_model(workdir / "model"), load_model(tmp_path / "two")
    assert torch.equal(one.log_phi, two.log_phi)
    assert [e["log_joint_per_token"] for e in one.history] == pytest.approx(
        [e["log_joint_per_token"] for e in two.history], abs=1e-5)


def test_topics_are_ordered_by_usage_everywhere(workdir, capsys):
    model = load_model(workdir / "model")
    order = model.topic_order()
    assert order == [k for k, _ in model.show_topics()]
    assert main(["topics", str(workdir / "model"), "--num-words", "3"]) == 0
    plain = [int(ln.split(":")[0].split()[1]) for ln in capsys.readouterr().out.strip().splitlines()]
    assert main(["topics", str(workdir / "model"), "--weights", "--num-words", "3"]) == 0
    weighted = [int(ln.split(":")[0].split()[1]) for ln in capsys.readouterr().out.strip().splitlines()]
    assert plain == weighted == order
    assert main(["topics", str(workdir / "model"), "--num-topics", "1", "--json"]) == 0
    assert [t["topic"] for t in json.loads(capsys.readouterr().out)] == order[:1]


def test_fit_without_out_saves_to_a_default_folder_and_says_where(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_corpus(tmp_path / "docs.txt", n=10)
    for expected in ("pyro-ssl-model", "pyro-ssl-model-1"):  # never overwrites an earlier fit
        assert main(["fit", "docs.txt", "--epochs", "1", "--show-topics", "0", *FAST]) == 0
        out = capsys.readouterr().out
        assert f"saved to {expected}" in out and "--out" in out
        assert load_model(tmp_path / expected).K == 2


def test_fit_filters_the_vocabulary_and_stops_early(tmp_path, capsys):
    write_corpus(tmp_path / "docs.txt", n=40)
    args = ["fit", str(tmp_path / "docs.txt"), "--epochs", "6", "--warmup-epochs", "0", "--stopwords", "--no-below", "2",
            "--patience", "1", "--min-delta", "100", "--validation", "0.25", "--validation-particles", "8", "--out", str(tmp_path / "m"),
            *FAST]
    assert main(args) == 0
    m = load_model(tmp_path / "m")
    words = set(m.vocab.itos[1:])
    assert words and not words & {"the", "on", "and", "in", "of", "as"} and m.vocab.drop_unknown
    assert len(m.history) == 2 and "heldout_log_lik" in m.history[0]  # stopped after patience 1, min_delta 100
    assert m.config.learning.patience == 1


def test_defaults_come_from_the_configuration():
    from pyro_ssl.config import LearningConfig, VocabConfig

    parser = build_parser()
    fit = parser.parse_args(["fit", "x.txt"])
    assert fit.vocab_size is None and fit.patience is None  # unset: the configuration's default applies
    ev = parser.parse_args(["evaluate", "m", "x.txt"])
    assert ev.particles == LearningConfig().eval_particles
    help_text = parser._subparsers._group_actions[0].choices["fit"].format_help()
    assert f"(default {VocabConfig().vocab_size})" in help_text
