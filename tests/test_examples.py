"""The scripts in examples/ run to completion on the real default model."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def run(name: str) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.model
def test_demo():
    out = run("demo.py")
    assert "answer" in out and "regex" in out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sampling.py", "reward_guided.py"])
def test_slow_examples(name):
    assert run(name).strip()
