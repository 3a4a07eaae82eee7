"""Every bad input an outside campaign fed the package gets one clear error (issue 15).

Each row is ``(id, call, exception type, message pattern)``: the call must raise exactly that
type with a message naming the argument (and, where it helps, the value and the fix), before
any expensive work. ``docs/reliability.md`` lists the same table.
"""

import math
import sys
import time

import pytest
import torch

import pyro_ssl
from pyro_ssl import SSL
from pyro_ssl.cli import main as cli_main
from pyro_ssl.data import Corpus, completion_split, load_corpus
from pyro_ssl.distributed import fit_distributed

TINY = dict(K=2, hidden_size=4, num_particles=2, epochs=1, progress=False, dtype=torch.float64)
DOCS = [[0, 1, 2, 3], [3, 2, 1], [1, 1, 0, 2, 3], [2, 3]]


@pytest.fixture(scope="module")
def m():
    return pyro_ssl.fit(DOCS, **TINY)


@pytest.fixture(scope="module")
def saved(m, tmp_path_factory):
    return m.save(tmp_path_factory.mktemp("saved") / "model")


def _fit(data, **kw):
    return pyro_ssl.fit(data, **{**TINY, **kw})


X = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]])
N = torch.tensor([4, 4])

CASES = [
    # settings: wrong type or value, refused at construction
    ("K=2.5", lambda m: SSL(K=2.5), ValueError, r"K must be an integer >= 1, got 2\.5"),
    ("K='3'", lambda m: SSL(K="3"), ValueError, r"K must be an integer >= 1, got '3'"),
    ("K=True", lambda m: SSL(K=True), ValueError, r"K must be an integer >= 1, got True"),
    ("K=0", lambda m: SSL(K=0), ValueError, r"K must be an integer >= 1"),
    ("epochs=1.7", lambda m: SSL(epochs=1.7), ValueError, r"epochs must be an integer >= 1, got 1\.7"),
    ("epochs=0", lambda m: SSL(epochs=0), ValueError, r"epochs must be an integer >= 1, got 0"),
    ("epochs=-3", lambda m: SSL(epochs=-3), ValueError, r"epochs must be an integer >= 1, got -3"),
    ("num_particles=2.5", lambda m: SSL(num_particles=2.5), ValueError, r"num_particles must be an integer >= 2"),
    ("ancestor_lag=2.5", lambda m: SSL(ancestor_lag=2.5), ValueError, r"ancestor_lag must be an integer >= 0 or 'full'"),
    ("block_resample_below=0", lambda m: SSL(block_resample_below=0), ValueError, r"block_resample_below must be in \(0, 1\]"),
    ("block_resample_below=1.5", lambda m: SSL(block_resample_below=1.5), ValueError, r"block_resample_below must be in \(0, 1\]"),
    ("clip_norm<0", lambda m: SSL(clip_norm=-1.0), ValueError, r"clip_norm must be in \(0, inf\]"),
    ("beta=nan", lambda m: SSL(beta=float("nan")), ValueError, r"beta must be a finite number, got nan"),
    ("hidden_size=0", lambda m: SSL(hidden_size=0), ValueError, r"hidden_size must be an integer >= 1, got 0"),
    ("batch_size=1.5", lambda m: SSL(batch_size=1.5), ValueError, r"batch_size must be an integer >= 1, got 1\.5"),
    ("seed=2**70", lambda m: SSL(seed=2**70), ValueError, r"seed must be an integer in \[0, 2\*\*63\)"),
    ("seed=-1", lambda m: SSL(seed=-1), ValueError, r"seed must be an integer in \[0, 2\*\*63\)"),
    ("resampling=stratified", lambda m: SSL(resampling="stratified"), ValueError,
     r"resampling='stratified' cannot be conditioned.*\['multinomial', 'systematic'\]"),
    ("dtype=float16", lambda m: SSL(dtype=torch.float16), ValueError, r"dtype must be torch.float32 or torch.float64"),
    ("device=bogus", lambda m: SSL(device="bogus"), ValueError, r"device must be a torch device"),
    ("unknown setting", lambda m: SSL(particles=3), TypeError, r"unknown setting.*did you mean 'num_particles'"),
    # fit: data
    ("empty corpus", lambda m: _fit(Corpus.from_texts([])), ValueError, r"data has no documents"),
    ("no documents", lambda m: _fit([]), ValueError, r"non-empty sequence"),
    ("texts not ids", lambda m: _fit(["a b"]), TypeError, r"document 0 is a string.*Corpus\.from_texts"),
    ("a path", lambda m: _fit("corpus.txt"), TypeError, r"load_corpus"),
    ("float ids", lambda m: _fit([[0.0, 1.5]]), TypeError, r"document 0 .*integer token ids"),
    ("integral float ids", lambda m: _fit([[0.0, 1.0]]), TypeError, r"document 0 .*integer token ids"),
    ("bool ids", lambda m: _fit([[True, False, True]]), TypeError, r"document 0 holds bools"),
    ("nested ids", lambda m: _fit([[[0, 1], [2]]]), TypeError, r"document 0 is not a flat sequence"),
    ("2-D document", lambda m: _fit([[[0, 1], [2, 3]]]), ValueError, r"document 0 has shape \(2, 2\)"),
    ("float tensor", lambda m: _fit((X.double(), N)), TypeError, r"tokens have dtype torch.float64"),
    ("negative id", lambda m: _fit([[1, -2]]), ValueError, r"non-negative"),
    ("empty document (batch_size>1)", lambda m: _fit(Corpus([[1, 2], [], [0]]), batch_size=50), ValueError,
     r"document 1 has length 0"),
    ("lengths beyond width", lambda m: _fit((X, torch.tensor([4, 9]))), ValueError,
     r"document 1 has length 9 but tokens are only 4 wide"),
    ("vocab_size=0", lambda m: _fit(DOCS, vocab_size=0), ValueError, r"vocab_size must be an integer >= 1, got 0"),
    ("vocab_size too small", lambda m: _fit(DOCS, vocab_size=2), ValueError, r"token id 3 out of range for vocab_size=2"),
    ("fit epochs=0", lambda m: SSL(K=2).fit(DOCS, epochs=0), ValueError, r"epochs must be an integer >= 1, got 0"),
    ("fit epochs=1.7", lambda m: SSL(K=2).fit(DOCS, epochs=1.7), ValueError, r"epochs must be an integer >= 1"),
    ("method", lambda m: SSL(K=2).fit(DOCS, method="gibbs"), ValueError, r"method must be 'pg'"),
    ("resume without dir", lambda m: SSL(K=2).fit(DOCS, resume=True), ValueError, r"resume=True needs checkpoint_dir"),
    ("resume='no'", lambda m: SSL(K=2).fit(DOCS, resume="no"), ValueError, r"resume must be True or False"),
    ("callback not callable", lambda m: SSL(K=2).fit(DOCS, callback=3), ValueError, r"callback must be callable"),
    ("checkpoint_dir is a file", lambda m: SSL(K=2).fit(DOCS, checkpoint_dir=__file__), ValueError,
     r"checkpoint_dir=.* is a file, not a directory"),
    ("eval_data not documents", lambda m: SSL(K=2).fit(DOCS, eval_data="valid.txt"), ValueError,
     r"eval_data must be a completion set \(tokens, lengths, T1\)"),
    ("eval_data T1 too long", lambda m: SSL(K=2).fit(DOCS, eval_data=(X, N, 4)), ValueError, r"no document is longer than T1"),
    # fitted model: inference arguments
    ("score seeds=()", lambda m: m.score(DOCS, seeds=()), ValueError, r"seeds must be a non-empty sequence"),
    ("score num_particles=0", lambda m: m.score(DOCS, num_particles=0), ValueError, r"num_particles must be an integer >= 1"),
    ("score unknown word", lambda m: m.score([[0, 9]]), ValueError, r"token id 9 out of range for vocab_size=4"),
    ("completion T1=-5", lambda m: m.completion_perplexity(X, N, -5), ValueError, r"T1 must be an integer >= 0, got -5"),
    ("completion T1=2.5", lambda m: m.completion_perplexity(X, N, 2.5), ValueError, r"T1 must be an integer >= 0"),
    ("completion lengths > width", lambda m: m.completion_perplexity(X, torch.tensor([4, 7]), 2), ValueError,
     r"has length 7 but tokens are only 4 wide"),
    ("completion zero length", lambda m: m.completion_perplexity(X, torch.tensor([4, 0]), 2), ValueError,
     r"document 1 has length 0"),
    ("completion negative id", lambda m: m.completion_perplexity(torch.tensor([[0, -1, 2]]), torch.tensor([3]), 1),
     ValueError, r"negative token id"),
    ("completion T1 >= lengths", lambda m: m.completion_perplexity(X, N, 4), ValueError, r"no document is longer than T1"),
    ("predict num_sweeps=-1", lambda m: m.predict(DOCS, num_sweeps=-1), ValueError, r"num_sweeps must be an integer >= 0"),
    ("predict num_particles=1", lambda m: m.predict(DOCS, num_particles=1), ValueError, r"num_particles must be an integer >= 2"),
    ("sample(-1, 5)", lambda m: m.sample(-1, 5), ValueError, r"num_docs must be an integer >= 1, got -1"),
    ("sample length 0", lambda m: m.sample(2, 0), ValueError, r"length must be an integer >= 1, got 0"),
    ("sample temperature nan", lambda m: m.sample(2, 3, temperature=float("nan")), ValueError,
     r"temperature must be a finite number, got nan"),
    ("sample temperature 0", lambda m: m.sample(2, 3, temperature=0), ValueError, r"temperature must be in \(0, inf\]"),
    ("sample seed", lambda m: m.sample(2, 3, seed=-1), ValueError, r"seed must be an integer in \[0, 2\*\*63\)"),
    ("top_words(-2)", lambda m: m.top_words(-2), ValueError, r"num_words must be an integer >= 1, got -2"),
    ("show_topics(0)", lambda m: m.show_topics(0), ValueError, r"num_topics must be -1 \(all\) or >= 1"),
    ("save to a file", lambda m: m.save(__file__), ValueError, r"path=.* is a file, not a directory"),
    ("load device cuda", lambda m: SSL.load("nowhere", device="cuda:99"), ValueError, r"device='cuda:99'"),
    # loaders
    ("load_corpus missing", lambda m: load_corpus("/nonexistent/corpus.txt"), FileNotFoundError, r"corpus.txt"),
    ("load_corpus binary", lambda m: load_corpus(sys.executable), ValueError, r"binary file"),
    ("Corpus vocab_size=0", lambda m: Corpus(DOCS, vocab_size=0), ValueError, r"vocab_size must be an integer >= 1"),
    # data-parallel entry: refused before any process group exists
    ("fit_distributed K=2.5", lambda m: fit_distributed(DOCS, K=2.5), ValueError, r"K must be an integer >= 1"),
    ("fit_distributed epochs=0", lambda m: fit_distributed(DOCS, K=2, epochs=0), ValueError, r"epochs must be"),
    ("fit_distributed resume", lambda m: fit_distributed(DOCS, K=2, resume=True), ValueError, r"resume=True needs"),
    ("fit_distributed device", lambda m: fit_distributed(DOCS, K=2, device="bogus"), ValueError, r"device must be"),
]


@pytest.mark.parametrize("call, exc, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_one_clear_error(m, call, exc, pattern):
    with pytest.raises(exc, match=pattern) as info:
        call(m)
    assert type(info.value) is exc  # not a subclass from deep inside


def test_cuda_device_refused_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match=r"device='cuda' but CUDA is not available"):
        SSL(device="cuda")


def test_fit_on_one_empty_document_is_refused_at_every_batch_size():
    for bs in (1, 2, 50):
        with pytest.raises(ValueError, match="length 0"):
            _fit(Corpus([[0, 1], [], [1]]), batch_size=bs)


def test_eval_data_as_lists_is_accepted(tmp_path):
    split = completion_split(Corpus(DOCS * 3), T1=2, T2=1, num_docs=6, seed=0)
    ev = (split.eval_tokens.tolist(), split.eval_lengths.tolist(), split.T1)
    m = _fit(DOCS, eval_data=ev, eval_particles=4)
    assert math.isfinite(m.history[-1]["completion_ppl"])


def test_saved_model_with_inf_weights_is_refused(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    import shutil

    from pyro_ssl import io

    d = tmp_path / "inf"
    shutil.copytree(saved, d)
    t = load_file(str(d / io.WEIGHTS_FILE))
    name = next(k for k in t if k.startswith("model."))
    t[name].view(-1)[0] = float("inf")
    save_file(t, str(d / io.WEIGHTS_FILE), metadata={"format": "pyro-ssl-model"})
    import json

    cfg = json.loads((d / io.CONFIG_FILE).read_text())
    cfg["files"][io.WEIGHTS_FILE] = io._sha256(d / io.WEIGHTS_FILE)  # a consistent but bad save
    (d / io.CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"NaN or infinite values"):
        SSL.load(d)


# ---------------------------------------------------------------------------- command line
def _cli(argv, capsys):
    rc = cli_main(argv)
    err = capsys.readouterr().err
    return rc, err


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    f = tmp_path_factory.mktemp("cli") / "docs.txt"
    f.write_text("the cat sat\nthe dog ran\na cat and a dog\n", encoding="utf-8")
    return f


CLI_CASES = [
    ("--beta nan", ["fit", "{text}", "--beta", "nan", "-q"], r"beta must be a finite number, got nan"),
    ("--device cuda", ["fit", "{text}", "--device", "cuda:99", "-q"], r"device='cuda:99'"),
    ("--out a file", ["fit", "{text}", "--out", "{text}", "-q", "--epochs", "1"], r"--out=.* is a file"),
    ("--checkpoint-dir a file", ["fit", "{text}", "--checkpoint-dir", "{text}", "-q"], r"--checkpoint-dir=.* is a file"),
    ("--epochs 0", ["fit", "{text}", "--epochs", "0", "-q"], r"epochs must be an integer >= 1, got 0"),
    ("assign a binary", ["assign", "{model}", sys.executable, "-q"], r"binary file"),
    ("assign --sweeps -1", ["assign", "{model}", "--text", "a b", "--sweeps", "-1", "-q"], r"num_sweeps must be"),
    ("generate --temperature nan", ["generate", "{model}", "--temperature", "nan"], r"--temperature must be a finite"),
    ("evaluate --seeds ,", ["evaluate", "{model}", "{text}", "--seeds", ",", "-q"], r"seeds must be a non-empty"),
    ("topics on no model", ["topics", "/nonexistent/model"], r"saved model directory not found"),
]


@pytest.fixture(scope="module")
def cli_model(text_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli_model") / "m"
    assert cli_main(["fit", str(text_file), "-K", "2", "--epochs", "1", "--particles", "2", "--hidden-size", "4",
                     "--out", str(out), "-q", "--show-topics", "0"]) == 0
    return out


@pytest.mark.parametrize("argv, pattern", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input_exits_2_with_a_message(argv, pattern, text_file, cli_model, capsys):
    argv = [a.format(text=text_file, model=cli_model) for a in argv]
    t0 = time.perf_counter()
    rc, err = _cli(argv, capsys)
    assert rc == 2, err
    assert "Traceback" not in err
    assert __import__("re").search(pattern, err), err
    assert time.perf_counter() - t0 < 30  # refused up front, not after minutes of work


def test_distributed_command_line_bad_input_exits_2(capsys, tmp_path):
    from pyro_ssl.distributed import main

    f = tmp_path / "docs.txt"
    f.write_text("a b c\nb c d\n", encoding="utf-8")
    assert main(["--data", str(f), "--beta", "nan", "--quiet"]) == 2
    assert "beta must be a finite number" in capsys.readouterr().err
    assert main(["--data", str(tmp_path / "missing.txt"), "--quiet", "-K", "2"]) == 2
    assert "missing.txt" in capsys.readouterr().err
