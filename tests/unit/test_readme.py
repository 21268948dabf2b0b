"""The README documents every setting, and the test command CI runs."""

from __future__ import annotations

from pathlib import Path

from tests.servers import StackSettings

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_configuration_table_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = sorted(n for n in StackSettings.env_names() if f"| `{n}` |" not in readme)
    assert not missing, f"README configuration table lacks: {missing}"


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text()


def test_the_readme_examples_send_the_corrected_reference_example() -> None:
    import re

    import orjson

    from tests.reference import REFERENCE_BODY

    readme = (ROOT / "README.md").read_text()
    bodies = re.findall(r"(?:send 21456878|-d) '(\{ \"interaction_id\".*?\})'", readme)
    assert len(bodies) >= 2
    for body in bodies:
        assert orjson.loads(body) == orjson.loads(REFERENCE_BODY)


def test_every_command_the_readme_names_exists() -> None:
    import re

    from typer.testing import CliRunner

    from producer_tools.cli import app

    readme = (ROOT / "README.md").read_text()
    commands = set(re.findall(r"`ucs-tasks ([a-z]+)", readme))
    commands |= set(re.findall(r"^ucs-tasks ([a-z]+)", readme, flags=re.MULTILINE))
    assert {"dev", "send", "produce", "replay", "export", "rebuild", "tail"} <= commands
    runner = CliRunner()
    for command in sorted(commands):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, f"ucs-tasks {command}: {result.output}"
