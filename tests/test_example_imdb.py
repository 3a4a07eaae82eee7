"""examples/imdb.py: the quick run end to end (shared IMDB sample when present, and a tiny CSV
written here so the test always runs), and the hint when no data is found."""

import csv
import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "imdb.py"
SHARED_CSV = REPO.parent / "shared" / "data" / "imdb" / "imdb_reviews_sample.csv"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def load_example():
    spec = importlib.util.spec_from_file_location("imdb_example", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def write_tiny_imdb_csv(path, n=44, length=185, seed=0):
    good = "great wonderful loved brilliant acting story superb moving".split()
    bad = "boring awful worst plot waste terrible dull script".split()
    glue = "the a film movie this was and it of".split()
    rng = random.Random(seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["review", "sentiment"])
        for i in range(n):
            theme = good if i % 2 else bad
            words = [rng.choice(theme if rng.random() < 0.5 else glue) for _ in range(length)]
            text = " ".join(words[:60]) + ".<br /><br />" + " ".join(words[60:]) + "."
            w.writerow([text, "positive" if i % 2 else "negative"])
    return path


def check_outputs(out, K=5):
    for name in ("results.md", "results.json"):
        assert (out / name).is_file()
    md = (out / "results.md").read_text()
    assert f"| SSL | {K} |" in md and "| unigram |" in md and f"| HMM | {K} |" in md
    assert "Command: `python examples/imdb.py" in md
    data = json.loads((out / "results.json").read_text())
    assert {r["model"] for r in data["summary"]} == {"ssl", "unigram", "hmm"}
    for row in data["summary"]:
        assert row["ppl_mean"] > 1 and row["n"] >= 1
    ssl = next(r for r in data["summary"] if r["model"] == "ssl")
    assert ssl["seconds_per_epoch"] > 0 and data["settings"]["T1"] == 100 and data["settings"]["T2"] == 70
    pngs = ["perplexity.png", f"topics_K{K}.png", "topic_ribbon_0.png"]
    for name in pngs:
        p = out / name
        assert p.is_file() and p.read_bytes()[:8] == PNG_MAGIC and p.stat().st_size > 3000, name


def test_quick_on_tiny_csv(tmp_path, capsys):
    data = write_tiny_imdb_csv(tmp_path / "tiny_imdb.csv")
    out = tmp_path / "out"
    rc = load_example().main(["--quick", "--data", str(data), "--out", str(out), "--quiet", "--ribbons", "1",
                                 "--epochs", "1"])
    assert rc == 0
    assert "| SSL | 5 |" in capsys.readouterr().out
    check_outputs(out)
    settings = json.loads((out / "results.json").read_text())["settings"]
    assert settings["num_docs"] == 40 and settings["vocab_built_from"] == 44


@pytest.mark.skipif(not SHARED_CSV.is_file(), reason="shared IMDB sample not present")
def test_quick_on_shared_imdb_sample(tmp_path):
    out = tmp_path / "out"
    rc = load_example().main(["--quick", "--data", str(SHARED_CSV), "--out", str(out), "--quiet"])
    assert rc == 0
    check_outputs(out)
    settings = json.loads((out / "results.json").read_text())["settings"]
    assert settings["V"] == 5000 and settings["vocab_built_from"] > 1000


def test_missing_data_exits_nonzero_with_hint(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--data", str(tmp_path / "nope.csv"), "--out",
                           str(tmp_path / "o")], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "aclImdb_v1.tar.gz" in proc.stderr and "ai.stanford.edu" in proc.stderr and "CSV" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_no_data_anywhere_exits_nonzero_with_hint(tmp_path, monkeypatch, capsys):
    mod = load_example()
    monkeypatch.setattr(mod, "CANDIDATES", (tmp_path / "a.csv", tmp_path / "aclImdb"))
    assert mod.main(["--quick", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "No IMDB data found" in err and "aclImdb_v1.tar.gz" in err and str(tmp_path / "a.csv") in err


def test_too_few_long_reviews_is_a_clear_error(tmp_path, capsys):
    data = write_tiny_imdb_csv(tmp_path / "short.csv", n=10, length=50)
    assert load_example().main(["--quick", "--data", str(data), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    assert "error:" in capsys.readouterr().err
