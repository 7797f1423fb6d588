"""The guided command line: generate (with a tiny model standing in) and validate."""

from __future__ import annotations

import json
import re

import pytest

import guided
from guided import cli


@pytest.fixture
def tiny_loader(monkeypatch, tiny_model):
    monkeypatch.setattr(guided, "load_model", lambda path=None, **kw: tiny_model)


def test_generate_regex_streams(tiny_loader, capsys):
    assert cli.main(["generate", "--regex", "[0-9]{3}-[a-z]{2}", "--temperature", "1", "--seed", "1", "hi"]) == 0
    out = capsys.readouterr().out.strip()
    assert re.fullmatch(r"[0-9]{3}-[a-z]{2}", out)


def test_generate_choices_and_stats(tiny_loader, capsys):
    assert cli.main(["generate", "--choices", "yes", "no", "--stats", "--no-stream", "q"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() in ("yes", "no") and "tok/s" in captured.err


def test_generate_error_exit_code(tiny_loader, capsys):
    assert cli.main(["generate", "--regex", "[a-z]{50}", "--max-new-tokens", "2", "q"]) == 1
    assert "max_new_tokens" in capsys.readouterr().err


def test_validate(tmp_path, capsys):
    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    good.write_text("2024-05-01")
    bad.write_text("2024-5-01")
    assert cli.main(["validate", str(good), "--regex", r"\d{4}-\d{2}-\d{2}"]) == 0
    assert cli.main(["validate", str(bad), "--regex", r"\d{4}-\d{2}-\d{2}"]) == 1
    assert ":1:7: invalid" in capsys.readouterr().err


def test_schema_flag_dispatches_to_json_schema(tmp_path, tiny_loader, capsys):
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "integer"}))
    (tmp_path / "x.json").write_text("42")
    code = cli.main(["validate", str(tmp_path / "x.json"), "--schema", str(schema)])
    if hasattr(guided, "JsonSchema"):
        assert code == 0
    else:
        assert code == 1 and "not available" in capsys.readouterr().err
