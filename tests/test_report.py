"""The HTML report: one self-contained page with every section, rendered by a real headless browser."""

import base64
import re
import shutil
import subprocess

import numpy as np
import pytest

from pyro_ssl import SSL
from pyro_ssl.cli import main
from pyro_ssl.report import comparison_rows, write_report

from helpers import simulated_corpus

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture(scope="module")
def fitted():
    docs = simulated_corpus(D=40, T=20)
    m = SSL(K=3, hidden_size=8, num_particles=4, batch_size=20, patience=5, seed=0)
    m.fit(docs[:32], epochs=3, eval_data=docs[32:], eval_particles=20, progress=False)
    return m, docs


def test_report_is_self_contained_with_every_section(fitted, tmp_path):
    m, docs = fitted
    table = {"summary": [{"model": "ssl", "K": 3, "ppl_mean": 11.2, "seeds": [0, 1]},
                         {"model": "unigram", "K": None, "ppl_mean": 12.0, "seeds": [0]}]}
    path = m.report(tmp_path / "sub" / "r.html", docs=docs[32:], num_docs=3, comparison=table)
    text = path.read_text(encoding="utf-8")
    for heading in ("Model", "Topics", "Documents coloured by topic", "Training and validation",
                    "Mixing of the sampler", "Comparison"):
        assert f"<h2>{heading}</h2>" in text
    assert not re.search(r'(src|href)="(http|//|file:)', text)  # nothing fetched
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(images) == 3  # topics, curves, mixing; each decodes to a PNG
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert text.count('class="doc"') == 3 and text.count('class="word"') == 60
    # topics in usage order, as show_topics lists them
    listed = [int(k) for k in re.findall(r'<td class="tid">.*?</span>topic (\d+)</td>', text)]
    assert listed == [k for k, _ in m.show_topics()] == m.topic_order()
    assert "ppl_mean" in text and "seeds" not in text  # scalar columns only
    # the function and the method are the same writer; a loaded model has no training documents
    m.save(tmp_path / "m")
    loaded = SSL.load(tmp_path / "m")
    text2 = write_report(loaded, tmp_path / "r2.html").read_text()
    assert "No documents given" in text2 and "Mixing of the sampler" in text2


def test_comparison_rows_formats(tmp_path):
    assert comparison_rows({"a": {"ppl": 1.0}}) == [{"model": "a", "ppl": 1.0}]
    assert comparison_rows([{"model": "b", "x": [1]}]) == [{"model": "b"}]
    f = tmp_path / "c.json"
    f.write_text('{"summary": [{"model": "c", "ppl_mean": 2.5}]}')
    assert comparison_rows(f) == [{"model": "c", "ppl_mean": 2.5}]
    with pytest.raises(TypeError):
        comparison_rows(3)


def test_cli_report(fitted, tmp_path, capsys):
    m, docs = fitted
    m.save(tmp_path / "m")
    (tmp_path / "docs.txt").write_text("\n".join(" ".join(str(i) for i in d) for d in docs[:3]) + "\n")
    out = tmp_path / "rep.html"
    assert main(["report", str(tmp_path / "m"), "--out", str(out), "--quiet"]) == 0
    assert out.is_file() and str(out) in capsys.readouterr().out


def _browser():
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


@pytest.mark.skipif(_browser() is None, reason="no headless browser installed (apt-get install chromium)")
def test_report_renders_in_a_headless_browser(fitted, tmp_path):
    """Chromium draws the page: the screenshot is not blank, and the top band holds the
    title (dark text) and the page further down holds colour (the topic-coloured words)."""
    m, docs = fitted
    page = m.report(tmp_path / "r.html", docs=docs[32:], num_docs=3)
    shot = tmp_path / "shot.png"
    cmd = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--screenshot={shot}", "--window-size=1200,2400", page.resolve().as_uri()]
    subprocess.run(cmd, check=True, timeout=120, capture_output=True)
    from matplotlib.image import imread

    img = imread(shot)[..., :3]
    assert img.shape[:2] == (2400, 1200)
    assert float(np.var(img)) > 0.01  # not a blank page
    assert float(img[:120].min()) < 0.3  # the title's dark text
    saturation = img.max(-1) - img.min(-1)
    assert float((saturation > 0.2).mean()) > 0.01  # coloured words, swatches and figures
