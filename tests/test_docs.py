"""Every command has help text and is documented in README.md; the README's two commands
are the ones CI and users run."""

from __future__ import annotations

import re
from pathlib import Path

import typer
from typer.main import get_command

from tracker.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands() -> list[tuple[str, object]]:
    root = get_command(app)
    out = []
    for name, cmd in root.commands.items():  # type: ignore[attr-defined]
        if hasattr(cmd, "commands"):
            out += [(f"{name} {sub}", c) for sub, c in cmd.commands.items()]
        else:
            out.append((name, cmd))
    return out


def test_every_command_has_help() -> None:
    for name, cmd in _commands():
        assert (cmd.help or "").strip(), f"tracker {name} has no help text"  # type: ignore[attr-defined]


def test_every_command_is_in_the_readme() -> None:
    for name, _ in _commands():
        assert f"tracker {name}" in README, f"`tracker {name}` is not documented in README.md"


def test_ci_runs_the_readme_test_command() -> None:
    match = re.search(r"## Run the tests\s+```sh\n(.+?)\n```", README, re.DOTALL)
    assert match, "README has no test command block"
    command = match.group(1).strip()
    assert command in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_readme_install_command_is_pip() -> None:
    assert "pip install . && tracker update" in README


def test_typer_app_is_the_entry_point() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'tracker = "tracker.cli:app"' in pyproject
    assert isinstance(app, typer.Typer)
