"""The README documents every setting, and the test command CI runs."""

from __future__ import annotations

from pathlib import Path

from schemas.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_configuration_table_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [n for n in Settings.model_fields if f"| `UCS_{n.upper()}` |" not in readme]
    assert not missing, f"README configuration table lacks: {missing}"


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text()
