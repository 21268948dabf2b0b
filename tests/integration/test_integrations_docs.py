"""docs/integrations.md: every Python snippet runs, unchanged, against the real consumer."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from tests.servers import StackSettings, create_topics

DOC = Path(__file__).resolve().parents[2] / "docs" / "integrations.md"
_SNIPPET = re.compile(r"```python\n# snippet: (\w+)\n(.*?)```", re.DOTALL)
SNIPPETS = dict(_SNIPPET.findall(DOC.read_text()))


def test_the_guide_has_its_runnable_snippets() -> None:
    assert set(SNIPPETS) == {"aiokafka", "faststream"}


@pytest.mark.parametrize("name", sorted(SNIPPETS))
async def test_a_snippet_gets_a_task_created_reply(
    name: str, settings: StackSettings, consumer: object, tmp_path: Path
) -> None:
    pytest.importorskip(name)
    replies = f"{settings.topics.requests}.{name}.replies"
    await create_topics(settings.with_(topic_requests=replies))
    script = tmp_path / f"snippet_{name}.py"
    script.write_text(SNIPPETS[name])
    env = {k: v for k, v in os.environ.items() if not k.startswith("UCS_")}
    env |= {k: v for k, v in settings.env().items() if k.startswith("UCS_")}
    env["MY_REPLY_TOPIC"] = replies
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert "task.created" in out.decode(), out.decode() + err.decode()
