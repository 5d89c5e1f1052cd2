"""Every command the README prints resolves as printed: `make` targets exist, and every program it calls (also
through `uv run`) is on PATH or in the project's environment."""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]
README = (PROJECT_DIR / "README.md").read_text()
ENV_ASSIGNMENT = re.compile(r"[A-Z_][A-Z0-9_]*=\S*")
STARTS = ("make ", "uv run ", "curl ", "PREFECT_API_URL=", "ONCOLOGY_")


def readme_commands() -> list[str]:
    """The command lines of the README: its bash blocks (comments dropped, continuations joined) and the
    inline code spans that start like a command."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#") and not line.startswith("'") and not line.startswith('"'):
                commands.append(line)
    spans = re.findall(r"`([^`\n]+)`", README)
    commands += [span for span in spans if span.startswith(STARTS) and len(_program(span)) >= 2]
    return commands


def _program(command: str) -> list[str]:
    """The words after any leading VAR=value assignments (quotes left open by a wrapped line are closed)."""
    try:
        words = shlex.split(command)
    except ValueError:  # a JSON body that continues on the next line
        words = shlex.split(command + "'")
    while words and ENV_ASSIGNMENT.fullmatch(words[0]):
        words = words[1:]
    return words


def _make_targets() -> set[str]:
    text = (PROJECT_DIR / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z0-9-]*):", text, re.M))


def test_the_readme_has_commands_to_check() -> None:
    commands = readme_commands()
    assert "make demo" in commands and "make test" in commands
    assert any(c.startswith("PREFECT_API_URL=") for c in commands)


@pytest.mark.parametrize("command", readme_commands())
def test_each_readme_command_resolves(command: str) -> None:
    words = _program(command)
    assert words, command
    program, rest = words[0], words[1:]
    if program == "make":
        assert rest and rest[0] in _make_targets(), f"{command}: no make target {rest[:1]}"
        return
    assert shutil.which(program), f"{command}: {program} is not on PATH (the README's set-up puts it there)"
    if program == "uv" and rest[:1] == ["run"]:
        args = [w for w in rest[1:] if not w.startswith("-")]
        if args[0] == "python":
            module = rest[rest.index("-m") + 1] if "-m" in rest else None
            assert module is None or importlib.util.find_spec(module), f"{command}: no module {module}"
        else:
            assert (PROJECT_DIR / ".venv" / "bin" / args[0]).exists(), f"{command}: {args[0]} is not installed"
