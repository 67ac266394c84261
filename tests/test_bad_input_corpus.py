"""Every case of the bad-input corpus gets one clear line, exit 2, and changes nothing."""

from __future__ import annotations

import importlib
import os
import pkgutil
from pathlib import Path

import pytest

import tests.bad_inputs as corpus
from fairaudit.errors import FairauditError


def _cases():
    cases = []
    for info in sorted(pkgutil.iter_modules(corpus.__path__), key=lambda m: m.name):
        if info.name.startswith("cases_"):
            cases.extend(importlib.import_module(f"tests.bad_inputs.{info.name}").CASES)
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "corpus case names must be unique"
    return cases


CASES = _cases()


def _snapshot(root: Path) -> dict[str, int]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            try:
                out[str(p.relative_to(root))] = p.stat().st_mtime_ns
            except FileNotFoundError:
                pass
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_one_line_and_exit_2(case, tmp_path, capsys, monkeypatch, request):
    from fairaudit.cli import main

    if case.needs_demo:
        request.getfixturevalue("demo_home")
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    argv = case.build(sandbox)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value.format(sandbox=sandbox))
    monkeypatch.chdir(sandbox)
    before = _snapshot(sandbox)
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"exit {code}; stderr: {err!r}"
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert "Traceback" not in err + out
    assert lines[0].startswith("fairaudit: error: ") and "error: fairaudit" not in lines[0]
    assert case.message.lower() in lines[0].lower(), lines[0]
    assert not corpus.marker_path(sandbox).exists(), "code from the hostile file ran"
    after = _snapshot(sandbox)
    assert set(after) - set(before) == set(), f"files written next to the input: {set(after) - set(before)}"
    assert {k: v for k, v in after.items() if k in before} == before, "an input file was changed"

    if case.upload is not None:
        with pytest.raises(FairauditError) as info:
            case.upload(sandbox)
        assert "\n" not in str(info.value).strip()
        assert not corpus.marker_path(sandbox).exists(), "code from the hostile upload ran"
