"""`ucs-tasks health`: ask the local processes' /healthz (the image's HEALTHCHECK).

One image runs either the consumer (its health port, `UCS_CONSUMER_HEALTH_PORT`) or the bridge
(`UCS_BRIDGE_PORT`): the command asks both on 127.0.0.1 and is healthy when one answers 200.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from observability.settings import HealthSettings

EXIT_HEALTHY, EXIT_UNHEALTHY = 0, 1


def default_urls() -> list[str]:
    """The consumer's health port, then the bridge's port, on this host."""
    from producer_tools.bridge.settings import BridgeSettings  # noqa: PLC0415 - bridge's port

    consumer = HealthSettings().port
    bridge = BridgeSettings().port
    return [f"http://127.0.0.1:{port}/healthz" for port in (consumer, bridge) if port]


def run(urls: list[str], timeout_s: float) -> int:
    """0 when one URL answers 200; else 1, with one line per URL saying what happened."""
    problems = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as answer:  # noqa: S310 - our URLs
                if answer.status == 200:
                    return EXIT_HEALTHY
                problems.append(f"{url}: HTTP {answer.status}")
        except urllib.error.HTTPError as exc:
            problems.append(f"{url}: HTTP {exc.code}")
        except (urllib.error.URLError, OSError) as exc:
            problems.append(f"{url}: {getattr(exc, 'reason', exc)}")
    print("ucs-tasks health: " + "; ".join(problems), file=sys.stderr)
    return EXIT_UNHEALTHY
