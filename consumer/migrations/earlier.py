"""An earlier revision's module, for a migration that edits that revision's SQL text rather
than repeat it (0004, 0006 and 0007 each rewrite the previous `apply_task_changes`).

Revision files are loaded by path: their names start with digits, so they cannot be imported
by name, and Alembic, not Python's import system, owns them.
"""

import importlib.util
from pathlib import Path
from types import ModuleType

VERSIONS = Path(__file__).with_name("versions")


def revision_module(filename: str) -> ModuleType:
    """The module of `versions/<filename>`, executed afresh."""
    path = VERSIONS / filename
    spec = importlib.util.spec_from_file_location(f"ucs_tasks_migration_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
