"""The user guide's code runs: every ```python fence of docs/user_guide.md is executed, in order,
in one namespace (in a temporary working directory); every documented ``pyro-ssl`` command
line parses with the real CLI parser."""

import re
import shlex
import textwrap
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "user_guide.md"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)


def fences(lang):
    return [(m.string[: m.start()].count("\n") + 1, textwrap.dedent(m.group(2)))
            for m in FENCE.finditer(GUIDE.read_text(encoding="utf-8")) if m.group(1) == lang]


def test_guide_has_every_section():
    text = GUIDE.read_text(encoding="utf-8")
    for heading in ("## Quickstart", "## Data", "## Fitting", "## Evaluating", "## Diagnostics", "## Command line"):
        assert heading in text
    assert len(fences("python")) >= 8


def test_python_snippets_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__user_guide__"}
    for line, code in fences("python"):
        try:
            exec(compile(code, f"{GUIDE.name}:{line}", "exec"), namespace)
        except Exception as e:  # name the failing snippet
            pytest.fail(f"snippet at {GUIDE.name} line {line} failed: {type(e).__name__}: {e}\n{code}")
    out = capsys.readouterr().out
    assert "completion perplexity:" in out and "R-hat" in out
    for png in ("curves", "mixing", "traces", "topics", "ribbon"):
        assert (tmp_path / "img" / f"{png}.png").stat().st_size > 3000
    assert (tmp_path / "lee_model" / "weights.safetensors").is_file()
    assert (tmp_path / "img" / "report.html").stat().st_size > 10_000
    for verb in ("transform(", "predict_proba(", "decode(", "perplexity(", "per_token=False", "report(",
                 "filter_extremes(", "patience="):
        assert verb in GUIDE.read_text(encoding="utf-8"), verb


def test_documented_command_lines_parse():
    from pyro_ssl.cli import build_parser

    parser = build_parser()
    commands = []
    for _, block in fences("bash"):
        joined = block.replace("\\\n", " ")
        commands += [ln.strip() for ln in joined.splitlines() if ln.strip().startswith("pyro-ssl ")]
    assert {c.split()[1] for c in commands} == {"fit", "evaluate", "topics", "assign", "generate", "report"}
    for cmd in commands:
        parser.parse_args(shlex.split(cmd)[1:])  # argparse exits on an unknown option


def test_referenced_images_exist():
    text = GUIDE.read_text(encoding="utf-8")
    for rel in re.findall(r"\]\((img/[^)]+\.png)\)", text):
        assert (GUIDE.parent / rel).is_file(), f"docs/{rel} missing: run python -m pyro_ssl.plots --demo docs/img"
