"""The workspace and the run registry: a damaged ``runs.sqlite``, ``FAIRAUDIT_HOME`` pointing at a file.

Every command that opens the workspace (``runs``, ``mitigate``, ``sweep``,
``report``, ``leakage``, and ``audit`` with the demo model) must say in one
sentence what is wrong and what to do, and leave the broken file as it was.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.bad_inputs import BadInput

HOME = {"FAIRAUDIT_HOME": "{sandbox}/home"}
HOME_IS_A_FILE = {"FAIRAUDIT_HOME": "{sandbox}/workspace.txt"}
DAMAGED = "the run registry"
NOT_A_FOLDER = "is a file, not a folder; point FAIRAUDIT_HOME at a folder"


def _garbage_registry(sandbox: Path) -> Path:
    path = sandbox / "home" / "runs.sqlite"
    path.parent.mkdir()
    path.write_bytes(b"these bytes are not an SQLite database\n" * 64)
    return path


def _truncated_registry(sandbox: Path) -> Path:
    """A real registry with a few hundred recorded metrics, cut off in the middle (a full disk, a bad copy)."""
    from fairaudit.jobs.registry import _SCHEMA

    path = sandbox / "home" / "runs.sqlite"
    path.parent.mkdir()
    conn = sqlite3.connect(path)
    conn.executescript(_SCHEMA)
    conn.execute("INSERT INTO runs (id, method, dataset, model, status, spec, config, seed, created)"
                 " VALUES ('20250101-000000-abcdef', 'erm', 'adult', 'demo', 'done', '{}', '{}', 0, 0)")
    conn.executemany("INSERT INTO metrics (run_id, step, epoch, kind, name, value, time) VALUES (?, ?, 1, 'step',"
                     " 'loss', 0.5, 0)", [("20250101-000000-abcdef", i) for i in range(3000)])
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


def _home_is_a_file(sandbox: Path) -> Path:
    path = sandbox / "workspace.txt"
    path.write_text("not a folder\n")
    return path


def _case(name: str, setup, argv: list[str], message: str, env: dict[str, str]) -> BadInput:
    def build(sandbox: Path) -> list[str]:
        setup(sandbox)
        return [a.format(sandbox=sandbox) for a in argv]

    return BadInput(name, build, message, env=env, tags=("jobs",))


_COMMANDS = {  # every command that opens the run registry
    "runs": ["runs"],
    "runs_show": ["runs", "--show", "20250101-000000-abcdef"],
    "runs_resume": ["runs", "--resume", "20250101-000000-abcdef"],
    "mitigate": ["mitigate", "erm", "--dataset", "adult", "--json", "{sandbox}/out.json"],
    "mitigate_detach": ["mitigate", "erm", "--dataset", "adult", "--detach"],
    "sweep": ["sweep", "erm", "--dataset", "adult", "--seeds", "2"],
    "report": ["report", "20250101-000000-abcdef", "--json", "{sandbox}/report.json"],
    "leakage": ["leakage", "20250101-000000-abcdef"],
}

CASES = [
    *[_case(f"registry_not_sqlite_{cmd}", _garbage_registry, argv, f"{DAMAGED} '", HOME)
      for cmd, argv in _COMMANDS.items()],
    _case("registry_not_sqlite_says_what_to_do", _garbage_registry, ["runs"],
          "is not an SQLite database (file is not a database); move it aside (for example rename it to "
          "runs.sqlite.broken) and run the command again", HOME),
    _case("registry_truncated_runs", _truncated_registry, ["runs"], "is damaged (database disk image is malformed)",
          HOME),
    _case("registry_truncated_mitigate", _truncated_registry, _COMMANDS["mitigate"], "is damaged", HOME),
    _case("registry_is_a_folder", lambda s: (s / "home" / "runs.sqlite").mkdir(parents=True), ["runs"],
          "cannot be opened: it is a folder, not a file; move it aside", HOME),
    *[_case(f"home_is_a_file_{cmd}", _home_is_a_file, argv, NOT_A_FOLDER, HOME_IS_A_FILE)
      for cmd, argv in _COMMANDS.items()],
    _case("home_is_a_file_says_what_to_do", _home_is_a_file, ["runs"],
          "workspace.txt' is a file, not a folder; point FAIRAUDIT_HOME at a folder, or move that file aside",
          HOME_IS_A_FILE),
    # A demo model with other dataset options is trained into the workspace (the default one ships in assets/).
    _case("home_is_a_file_audit_demo", _home_is_a_file,
          ["audit", "--dataset", "colored-digits", "--data-opt", "bias=0.8", "--json", "{sandbox}/audit.json"],
          NOT_A_FOLDER, HOME_IS_A_FILE),
    _case("home_is_a_file_robustness_demo", _home_is_a_file,
          ["robustness", "--dataset", "colored-digits", "--data-opt", "bias=0.8", "--json",
           "{sandbox}/robustness.json"], NOT_A_FOLDER, HOME_IS_A_FILE),
    _case("home_below_a_file", _home_is_a_file, ["runs"], "workspace.txt' is a file; point FAIRAUDIT_HOME at a folder",
          {"FAIRAUDIT_HOME": "{sandbox}/workspace.txt/home"}),
]
