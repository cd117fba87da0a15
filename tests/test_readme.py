"""The README's Python API example runs as written and prints what it says it prints."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def python_block(section: str) -> str:
    text = README.read_text(encoding="utf-8")
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", body, re.DOTALL)
    assert match, f"no python example under '## {section}'"
    return match.group(1)


def test_the_python_api_example_runs() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(python_block("Python API"), "README.md", "exec"), {})
    printed = out.getvalue()
    assert "config key 'lr': 2.0 is above the maximum 1.0" in printed
    assert re.search(r"lr 0\.02 alice \d\d:\d\d:\d\d", printed)
    assert re.search(r"lr 0\.05 bob \d\d:\d\d:\d\d", printed)
    assert "every replica reads" in printed
    assert "lr: (0.02, 0.05) → 0.03" in printed or "lr: (0.05, 0.02) → 0.03" in printed


def test_the_crdt_core_example_runs() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(python_block("The CRDT core"), "README.md", "exec"), {})
    first, second = out.getvalue().splitlines()
    assert sorted(eval(first)) == [0.02, 0.1]  # both concurrent values are kept
    assert float(second) in (0.02, 0.1)


def test_the_live_training_example_runs() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(python_block("Live training"), "README.md", "exec"), {})
    assert out.getvalue().strip().endswith("lr: 0.01 → 0.05 (in effect at step 100)")
