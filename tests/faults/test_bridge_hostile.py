"""Hostile input over HTTP against a real bridge process (and a real consumer process).

A Hypothesis property posts arbitrary bytes, JSON and header values to the start endpoint, and a
corpus sends the nasty inputs one by one: deep nesting, huge numbers, wrong types, NaN, duplicate
keys, bad UTF-8, a BOM, oversized bodies, huge and numerous headers (431) and long request
targets (414) at the default bounds, HTTP framing tricks, SQL and HTML metacharacters (which
must round-trip verbatim), odd service ids, status ids and timestamps, hostile end and extension
requests (refused before they are published) and Query Tasks parameters. Every answer is 200,
201, 202 or a clear 4xx (503 if a server is away), never another 5xx; every error the bridge
writes has the contract's body; the process stays up and its memory bounded.
(Schemathesis covers the OpenAPI document: tests/integration/test_bridge_openapi.py.)
"""

from __future__ import annotations

import json
import re
import select
import socket
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import hypothesis
import orjson
import pytest
from hypothesis import HealthCheck
from hypothesis import strategies as st

from schemas.replies import EXCEPTION_CLASS
from tests import servers
from tests.faults.bridge_harness import (
    SERVICE_ID,
    START,
    BridgeProcess,
    bridge_overrides,
    warm_up,
)
from tests.faults.harness import ConsumerProcess, Report
from tests.servers import StackSettings, create_topics

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

EXAMPLES = 400
ALLOWED = {200, 201, 202, 400, 404, 405, 413, 414, 415, 422, 431, 503}
RSS_GROWTH_LIMIT = 100 * 1024 * 1024
MAX_BODY = 1_048_576
JSON_TYPE = {"Content-Type": "application/json"}
TRIED: Counter[str] = Counter()
"""Inputs tried by the corpus tests, per result class (reported by the last test)."""


@dataclass
class Served:
    """The bridge and consumer processes of this module, and a blocking client."""

    settings: StackSettings
    bridge: BridgeProcess
    consumer: ConsumerProcess
    client: httpx.Client
    rss_before: int = 0

    @property
    def port(self) -> int:
        return self.settings.bridge.port

    def assert_up(self) -> None:
        assert self.bridge.alive, f"the bridge died:\n{self.bridge.log_tail()}"
        assert self.consumer.alive, f"the consumer died:\n{self.consumer.log_tail()}"


@pytest.fixture(scope="module")
async def served(
    kafka_bootstrap: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    base = servers.make_settings(kafka_bootstrap, database_url)
    settings = base.with_(**bridge_overrides(base, max_body_bytes=MAX_BODY))
    await create_topics(settings)
    logs = tmp_path_factory.mktemp("hostile")
    consumer = ConsumerProcess(settings, logs / "consumer.log")
    consumer.start()
    bridge = BridgeProcess(settings, logs / "bridge.log")
    bridge.start()
    try:
        await bridge.wait_ready()
        async with httpx.AsyncClient(base_url=bridge.base_url, timeout=30) as warm:
            await warm_up(warm)
        with httpx.Client(base_url=bridge.base_url, timeout=30) as client:
            here = Served(settings, bridge, consumer, client)
            here.rss_before = bridge.rss_bytes()
            yield here
    finally:
        bridge.kill()
        consumer.kill()


def assert_clear(response: httpx.Response, *, ours: bool = True) -> None:
    """An allowed status; an error body (when the bridge wrote it) of the contract's shape."""
    assert response.status_code in ALLOWED, (response.status_code, response.text[:500])
    if response.status_code >= 400 and ours:
        assert response.headers["content-type"] == "application/json", response.text[:300]
        body = response.json()
        assert set(body) == {"message", "exception", "errors"}, body
        assert body["exception"] == EXCEPTION_CLASS
        assert body["message"]
        assert isinstance(body["errors"], list)


# --- the property --------------------------------------------------------------------------

FIELDS = [
    "state_id", "task_type", "session_id", "interaction_id", "application_type",
    "application_id", "resource_type", "resource_id", "media_type", "est_duration", "timestamp",
    "task_id", "service_id", "started", "extensions",
]  # fmt: skip
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
objects = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=12), json_values, max_size=6)


@st.composite
def mangled(draw: st.DrawFn) -> bytes:
    """A JSON object's text, cut short or with a byte flipped."""
    text = json.dumps(draw(objects)).encode()
    if draw(st.booleans()):
        return text[: draw(st.integers(0, len(text)))]
    at = draw(st.integers(0, max(0, len(text) - 1)))
    return text[:at] + bytes([draw(st.integers(0, 255))]) + text[at + 1 :]


INT32 = st.integers(-(2**31), 2**31 - 1)
plausible = st.fixed_dictionaries(
    {},
    optional={
        "state_id": INT32,
        "task_type": st.integers(-(2**63), 2**63 - 1) | st.text(min_size=1, max_size=30),
        "session_id": st.text(max_size=60),
        "interaction_id": st.text(max_size=60),
        "est_duration": st.integers(0, 2**31 - 1),
        "timestamp": st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
        "Attached": json_values,
        "x": st.text(max_size=20),
    },
)
"""Events that are mostly valid: the publish path meets hostile headers too."""

bodies = st.one_of(
    st.binary(max_size=300),
    plausible.map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
    plausible.map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    objects.map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
    mangled(),
)
# Bytes h11 lets a client send in a header value (no CR, LF or NUL), without outer whitespace.
_VALUE_BYTES = bytes([9, *range(0x20, 0x7F), *range(0x80, 0x100)])
header_values = st.binary(max_size=300).map(
    lambda raw: bytes(_VALUE_BYTES[b % len(_VALUE_BYTES)] for b in raw).strip(b" \t")
)
content_types = st.sampled_from([
    b"application/json", b"application/json; charset=utf-8", b"text/plain",
    b"application/cloudevents+json", b"application/vnd.x+json",
    b"application/json; charset=latin-1",
]) | header_values  # fmt: skip
header_names = st.sampled_from(["Idempotency-Key", "Content-Encoding", "Accept", "X-Anything"])
service_ids = st.one_of(
    st.just(str(SERVICE_ID)),
    st.integers(1, 2**63 - 1).map(str),
    st.integers().map(str),
    st.text(max_size=25),
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, dict[str, bytes], bytes]:
    if draw(st.booleans()):  # a well-formed request around a hostile or plausible body
        return "POST", START, {"Content-Type": b"application/json"}, draw(bodies)
    method = draw(st.sampled_from(["POST"] * 20 + ["PUT", "PATCH", "DELETE", "GET"]))
    path = START.replace(str(SERVICE_ID), quote(draw(service_ids), safe=""))
    headers: dict[str, bytes] = {}
    if draw(st.integers(0, 3)):  # mostly with one
        headers["Content-Type"] = draw(content_types)
    for name in draw(st.lists(header_names, max_size=3, unique=True)):
        headers[name] = draw(header_values)
    return method, path, headers, draw(bodies)


def test_arbitrary_bodies_and_headers_never_break_the_bridge(
    served: Served, report: Report
) -> None:
    seen: Counter[int] = Counter()

    @hypothesis.settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(request=requests())
    def never_breaks(request: tuple[str, str, dict[str, bytes], bytes]) -> None:
        method, path, headers, body = request
        response = served.client.request(method, path, headers=headers, content=body)
        seen[response.status_code] += 1
        assert_clear(response)
        assert served.bridge.alive, served.bridge.log_tail()

    never_breaks()
    served.assert_up()
    classes = " ".join(f"{code}={count}" for code, count in sorted(seen.items()))
    report.add(f"faults: bridge-hostile-property examples={sum(seen.values())} {classes}")


# --- the corpus ----------------------------------------------------------------------------

Check = Callable[[httpx.Response, httpx.Client], None]


@dataclass(frozen=True)
class Case:
    """One nasty request and the answers it may get."""

    body: bytes | None = b"{}"
    expect: frozenset[int] = frozenset({400})
    headers: dict[str, Any] = field(default_factory=lambda: dict(JSON_TYPE))
    method: str = "POST"
    path: str = START
    check: Check | None = None


def _case(body: bytes | dict[str, Any] | None, *expect: int, **kw: Any) -> Case:
    raw = orjson.dumps(body) if isinstance(body, dict) else body
    return Case(raw, frozenset(expect or {400}), **kw)


def _field_named(name: str) -> Check:
    def check(response: httpx.Response, _: httpx.Client) -> None:
        if response.status_code == 400:
            fields = [e["field"] for e in response.json()["errors"]]
            assert any(f == name or f.startswith((f"{name}.", f"{name}[")) for f in fields), fields

    return check


def _reads_back(expected: dict[str, Any], started: dict[str, Any] | None = None) -> Check:
    """201, and the task read with ?extensions=* holds exactly what was sent, in order."""

    def check(response: httpx.Response, client: httpx.Client) -> None:
        assert response.status_code == 201, response.text
        path = httpx.URL(response.headers["location"]).path
        read = client.get(path, params={"extensions": "*"})
        assert read.status_code == 200, read.text
        task = orjson.loads(read.content)
        attached = {k: v for k, v in task.items() if k not in _TASK_KEYS}
        assert attached == expected
        assert list(attached) == list(expected)
        for name, value in (started or {}).items():
            assert task["started"][name] == value, (name, task["started"])

    return check


_TASK_KEYS = {"task_id", "service_id", "state_id", "task_type", "est_duration", "started"}
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _timestamp(value: Any, *expect: int, becomes: str | None = None) -> Case:
    def check(response: httpx.Response, client: httpx.Client) -> None:
        _field_named("timestamp")(response, client)
        if response.status_code == 201:
            path = httpx.URL(response.headers["location"]).path
            stored = client.get(path).json()["started"]["timestamp"]
            assert _TIMESTAMP.match(stored), stored
            assert becomes is None or stored == becomes, stored

    return _case({"timestamp": value}, *expect, check=check)


def _service(raw: str, *expect: int) -> Case:
    path = START.replace(str(SERVICE_ID), raw)
    return _case({}, *(expect or (400,)), path=path, check=_field_named("service_id"))


def _status(raw: str) -> Case:
    path = f"/genesys/1/cs/services/{SERVICE_ID}/tasks/requests/{raw}"
    return _case(None, 400, method="GET", path=path, check=_field_named("event_id"))


TASKS = f"/genesys/1/cs/services/{SERVICE_ID}/tasks"


def _change(path: str, field_name: str, method: str = "POST") -> Case:
    return _case({}, method=method, path=path, check=_field_named(field_name))


def _query(query: str, *expect: int) -> Case:
    return _case(None, *expect, method="GET", path=f"{TASKS}/completed?{query}")


def _nested(levels: int, open_: bytes, close: bytes, inner: bytes = b"1") -> bytes:
    return b'{"deep": ' + open_ * levels + inner + close * levels + b"}"


METACHARACTERS = {
    "'; DROP TABLE tasks; --": "Robert'); DELETE FROM tasks WHERE ('1'='1",
    "<script>alert(1)</script>": "<img src=x onerror=alert(document.cookie)>",
    '" OR ""="': '\\"; SELECT pg_sleep(10); --',
    "\u0001\u0007\u001b[31mred\u001b[0m\u007f": "\t\n\r\u000b\u000c\u0085\u2028\u2029",
    "%s%n%x%d": "${jndi:ldap://x/a} {{7*7}} #{1+1} <%= 1 %>",
    "\u202e\u200b\ufeff": "emoji \U0001f600 and \U0001d11e, combining e\u0301",
    "$where": {"$gt": "", "__proto__": {"polluted": True}, "constructor": [None, -0.0, 1e308]},
    "..\\..\\etc\\passwd": "/../../etc/shadow\\x00",
    "": "an empty key",
    'key with "quotes" and \\backslashes\\': ["'", '"', "\\", "`", ""],
}
STANDARD_STRINGS = {
    "session_id": "'; DROP TABLE tasks; --",
    "interaction_id": "<b onmouseover=alert(1)>\u0008\u001f",
}

CORPUS: dict[str, Case] = {
    # structure
    "nested arrays 100000": _case(_nested(100_000, b"[", b"]")),
    "nested objects 100000": _case(_nested(100_000, b'{"a":', b"}")),
    "nested 65 levels": _case(_nested(64, b"[", b"]"), check=_field_named("deep")),
    "nested 63 levels": _case(_nested(62, b"[", b"]"), 201),
    "10000 attached keys": _case({f"k{i}": i for i in range(10_000)}, 201),
    "body at the limit": _case(b'{"blob": "' + b"x" * (MAX_BODY - 12) + b'"}', 201),
    "body one byte over": _case(b'{"blob": "' + b"x" * (MAX_BODY - 11) + b'"}', 413),
    "empty body": _case(b""),
    "whitespace body": _case(b" \n\t "),
    "null body": _case(b"null"),
    "string body": _case(b'"{}"'),
    "array body": _case(b"[{}]"),
    "number body": _case(b"123"),
    "two objects": _case(b"{} {}"),
    "trailing comma": _case(b'{"state_id": 1,}'),
    "single quotes": _case(b"{'state_id': 1}"),
    "comment": _case(b'{"state_id": 1 /* x */}'),
    # numbers and types
    "huge float": _case(b'{"state_id": 1e400}'),
    "huge integer field": _case(b'{"state_id": 123456789012345678901234567890}'),
    "huge integer attached": _case(
        b'{"n": 123456789012345678901234567890}', check=_field_named("n")
    ),
    "2^64-1 attached": _case(b'{"n": 18446744073709551615}', 201),
    "float for integer": _case({"state_id": 1.0}, check=_field_named("state_id")),
    "boolean for integer": _case({"resource_id": True}, check=_field_named("resource_id")),
    # UCS_FIELD_MODE=genesys (the default) takes decimal text for an integer and an integer for
    # a string, as Context Services does; other types are refused as ever.
    "decimal string for integer": _case({"application_id": "7"}, 201),
    "text for integer": _case({"application_id": "7a"}, check=_field_named("application_id")),
    "null for a field": _case({"state_id": None}, check=_field_named("state_id")),
    "array for integer": _case({"est_duration": [1]}, check=_field_named("est_duration")),
    "2^31 state": _case({"state_id": 2**31}, check=_field_named("state_id")),
    "-2^31-1 state": _case({"state_id": -(2**31) - 1}, check=_field_named("state_id")),
    "negative duration": _case({"est_duration": -1}, check=_field_named("est_duration")),
    "2^63 task type": _case({"task_type": 2**63}, check=_field_named("task_type")),
    "empty task type": _case({"task_type": ""}, check=_field_named("task_type")),
    "float media type": _case({"media_type": 1.5}, check=_field_named("media_type")),
    "integer for string": _case({"session_id": 42}, 201),
    "float for string": _case({"session_id": 4.2}, check=_field_named("session_id")),
    "string over the cap": _case({"session_id": "s" * 1025}, check=_field_named("session_id")),
    "string at the cap": _case({"session_id": "s" * 1024}, 201),
    "NaN": _case(b'{"x": NaN}'),
    "Infinity": _case(b'{"state_id": Infinity}'),
    "-Infinity": _case(b'{"x": -Infinity}'),
    "duplicate keys, last valid": _case(
        b'{"state_id": "x", "state_id": 5}', 201, check=lambda r, c: None
    ),
    "duplicate keys, last invalid": _case(
        b'{"state_id": 5, "state_id": "x"}', check=_field_named("state_id")
    ),
    "reserved key task_id": _case({"task_id": 1}, check=_field_named("task_id")),
    "reserved key started": _case({"started": {}}, check=_field_named("started")),
    "reserved key extensions": _case({"extensions": "*"}, check=_field_named("extensions")),
    # encodings
    "invalid UTF-8": _case(b'{"session_id": "\xff\xfe"}'),
    "overlong UTF-8": _case(b'{"session_id": "\xc0\xaf"}'),
    "UTF-8 surrogate bytes": _case(b'{"session_id": "\xed\xa0\x80"}'),
    "lone surrogate escape": _case(b'{"session_id": "\\ud800"}'),
    "NUL in a value": _case(b'{"session_id": "a\\u0000b"}', check=_field_named("session_id")),
    "NUL in a key": _case(b'{"a\\u0000b": 1}'),
    "BOM": _case(b"\xef\xbb\xbf{}"),
    "UTF-16 body": _case("{}".encode("utf-16")),
    "UTF-32 body": _case('{"state_id": 1}'.encode("utf-32")),
    # metacharacters, verbatim
    "metacharacters round-trip": _case(
        {**STANDARD_STRINGS, **METACHARACTERS},
        201,
        check=_reads_back(METACHARACTERS, STANDARD_STRINGS),
    ),
    "escaped control characters round-trip": _case(
        b'{"\\u0001\\u001f": "\\u0002\\b\\f\\n\\r\\t\\"\\\\\\/"}',
        201,
        check=_reads_back({"\u0001\u001f": '\u0002\b\f\n\r\t"\\/'}),
    ),
    # service ids
    "service 0": _service("0"),
    "service -1": _service("-1"),
    "service 2^63": _service(str(2**63)),
    "service 2^63-1": _case({}, 201, path=START.replace(str(SERVICE_ID), str(2**63 - 1))),
    "service 10^100": _service("1" + "0" * 100),
    "service abc": _service("abc"),
    "service 1e3": _service("1e3"),
    "service +1": _service("%2B1"),
    "service 01": _service("01"),
    "service space 1": _service("%201"),
    "service 1.0": _service("1.0"),
    "service 0x10": _service("0x10"),
    "service arabic digits": _service(quote("\u0661\u0662\u0663")),
    "service NUL": _service("%00"),
    "service SQL": _service(quote("1 OR 1=1; --")),
    "service 60 KB": _service("9" * 60_000, 414),
    "service empty": _case({}, 404, path=START.replace(str(SERVICE_ID), "")),
    "service slash": _case({}, 404, path=START.replace(str(SERVICE_ID), "1%2F2")),
    # timestamps
    "timestamp reference": _timestamp(
        "2010-05-20T15:41:52.380Z", 201, becomes="2010-05-20T15:41:52.380Z"
    ),
    "timestamp seconds": _timestamp(
        "2010-05-20T15:41:52Z", 201, becomes="2010-05-20T15:41:52.000Z"
    ),
    "timestamp offset": _timestamp(
        "2010-05-20T17:41:52.380+02:00", 201, becomes="2010-05-20T15:41:52.380Z"
    ),
    "timestamp nanoseconds": _timestamp("2010-05-20T15:41:52.380123456Z", 201, 400),
    "timestamp naive": _timestamp("2010-05-20T15:41:52.380"),
    "timestamp date only": _timestamp("2010-05-20"),
    "timestamp space": _timestamp("2010-05-20 15:41:52Z", 201, 400),
    "timestamp basic format": _timestamp("20100520T154152Z", 201, 400),
    "timestamp comma": _timestamp("2010-05-20T15:41:52,380Z", 201, 400),
    "timestamp words": _timestamp("yesterday"),
    "timestamp empty": _timestamp(""),
    "timestamp epoch number": _timestamp(1274370112),
    "timestamp epoch float": _timestamp(1274370112.5),
    "timestamp February 30": _timestamp("2010-02-30T00:00:00Z"),
    "timestamp leap second": _timestamp("2016-12-31T23:59:60Z", 201, 400),
    "timestamp year 0": _timestamp("0000-01-01T00:00:00Z"),
    "timestamp year 9999": _timestamp("9999-12-31T23:59:59.999Z", 201),
    "timestamp offset +25:00": _timestamp("2010-05-20T15:41:52.380+25:00"),
    "timestamp -00:00": _timestamp("2010-05-20T15:41:52.380-00:00", 201, 400),
    "timestamp newline": _timestamp("2010-05-20T15:41:52.380Z\n", 201, 400),
    "timestamp object": _timestamp({"$date": 1}),
    # headers
    "content type utf-16": _case(
        {}, 415, headers={"Content-Type": "application/json; charset=utf-16"}
    ),
    "content type text/json": _case({}, 415, headers={"Content-Type": "text/json"}),
    "content type upper case": _case({}, 201, headers={"Content-Type": "APPLICATION/JSON"}),
    "content type quoted charset": _case(
        {}, 201, headers={"Content-Type": 'application/json; charset="UTF-8"'}
    ),
    "content type multipart": _case(
        {}, 415, headers={"Content-Type": "multipart/form-data; boundary=x"}
    ),
    "content type 64 KB": _case({}, 431, headers={"Content-Type": "application/" + "x" * 65_536}),
    "content type 8 KB": _case({}, 415, headers={"Content-Type": "application/" + "x" * 8_192}),
    "content encoding gzip": _case(
        b"\x1f\x8b\x08\x00", headers={**JSON_TYPE, "Content-Encoding": "gzip"}
    ),
    "idempotency key 64 KB": _case({}, 431, headers={**JSON_TYPE, "Idempotency-Key": "k" * 65_536}),
    "idempotency key 8 KB": _case(
        {},
        headers={**JSON_TYPE, "Idempotency-Key": "k" * 8_192},
        check=_field_named("Idempotency-Key"),
    ),
    "idempotency key 257": _case(
        {},
        headers={**JSON_TYPE, "Idempotency-Key": "k" * 257},
        check=_field_named("Idempotency-Key"),
    ),
    "idempotency key tab": _case(
        {}, headers={**JSON_TYPE, "Idempotency-Key": b"a\tb"}, check=_field_named("Idempotency-Key")
    ),
    "idempotency key latin-1": _case(
        {},
        headers={**JSON_TYPE, "Idempotency-Key": b"caf\xe9"},
        check=_field_named("Idempotency-Key"),
    ),
    "idempotency key twice": _case(
        {},
        headers=[
            ("Content-Type", "application/json"),
            ("Idempotency-Key", "a"),
            ("Idempotency-Key", "b"),
        ],
        check=_field_named("Idempotency-Key"),
    ),
    "idempotency key path-like": _case(
        {}, 201, headers={**JSON_TYPE, "Idempotency-Key": f"../../etc/passwd?{uuid.uuid4()}#x"}
    ),
    "idempotency key SQL": _case(
        {}, 201, headers={**JSON_TYPE, "Idempotency-Key": f"' OR 1=1; -- {uuid.uuid4()}"}
    ),
    # the default bounds: 100 header fields, 16 KiB of them, an 8 KiB request target
    "X- header 12 KB": _case({}, 201, headers={**JSON_TYPE, "X-Padding": "p" * 12_288}),
    "X- header 64 KB": _case({}, 431, headers={**JSON_TYPE, "X-Padding": "p" * 65_536}),
    "X- header 1 MB": _case({}, 431, headers={**JSON_TYPE, "X-Padding": "p" * 1_048_576}),
    "90 headers": _case(
        {},
        201,
        headers=[("Content-Type", "application/json")] + [(f"X-H{i}", "v") for i in range(90)],
    ),
    "5000 headers": _case(
        {},
        431,
        headers=[("Content-Type", "application/json")] + [(f"X-H{i}", "v") for i in range(5000)],
    ),
    "query string 6 KB": _case({}, 201, path=START + "?" + "x=1&" * 1_500),
    "query string 60 KB": _case({}, 414, path=START + "?" + "x=1&" * 15_000),
    # methods and paths
    "PUT on start": _case({}, 405, method="PUT"),
    "DELETE on start": _case(None, 405, method="DELETE"),
    "OPTIONS on start": _case(None, 405, method="OPTIONS"),
    "HEAD on start": Case(None, frozenset({405}), method="HEAD", check=lambda r, c: None),
    "path traversal": _case(None, 404, method="GET", path="/genesys/1/cs/../../etc/passwd"),
    "path NUL": _case({}, 404, path=START + "%00"),
    "path 60 KB": _case({}, 414, path="/genesys/" + "a" * 60_000),
    # status ids no request can have: a 400 naming the parameter, never an outage
    "status NUL": _status("%00"),
    "status control character": _status("a%01b"),
    "status line feed": _case(  # no route matches a line feed: 404, and still no outage
        None, 404, method="GET", path=f"/genesys/1/cs/services/{SERVICE_ID}/tasks/requests/a%0Ab"
    ),
    "status invalid UTF-8": _status("%FF"),
    "status overlong UTF-8": _status("%C0%AF"),
    "status 300 characters": _status("s" * 300),
    "unknown task id 2^100": _case(
        None, 404, method="GET", path=f"/genesys/1/cs/service/{SERVICE_ID}/tasks/{2**100}"
    ),
    # Complete Task, Update Task Extension: refused before anything is published
    "end NaN": _case(b'{"x": NaN}', path=f"{TASKS}/1/end"),
    "end task id 2^100": _change(f"{TASKS}/{2**100}/end", "task_id"),
    "end task id NUL": _change(f"{TASKS}/%00/end", "task_id"),
    "end task id -1": _change(f"{TASKS}/-1/end", "task_id"),
    "end long disposition_desc": _case(
        {"disposition_desc": "d" * 65},
        path=f"{TASKS}/1/end",
        check=_field_named("disposition_desc"),
    ),
    "end 2 MB": _case(b"{" + b" " * 2_000_000 + b"}", 413, path=f"{TASKS}/1/end"),
    "extension name NUL": _change(f"{TASKS}/1/extensions/%00", "extension_name", "PUT"),
    "extension name invalid UTF-8": _change(f"{TASKS}/1/extensions/%FF", "extension_name", "PUT"),
    "extension name 300": _change(f"{TASKS}/1/extensions/{'n' * 300}", "extension_name", "PUT"),
    "extension name reserved": _change(f"{TASKS}/1/extensions/started", "extension_name", "PUT"),
    "extension value NUL key": _case(
        b'{"a\\u0000": 1}', method="PUT", path=f"{TASKS}/1/extensions/x"
    ),
    "extension value 200 levels": _case(
        _nested(200, b'{"a":', b"}"), method="PUT", path=f"{TASKS}/1/extensions/x"
    ),
    "extension value string": _case(b'"x"', method="PUT", path=f"{TASKS}/1/extensions/x"),
    # Query Tasks: every parameter bound, never an outage
    "query type NUL": _query("task_types=a%00b", 400),
    "query type SQL": _query(f"task_types={quote(chr(39) + ' OR 1=1; --')}", 200),
    "query type 1,000 tokens": _query("task_types=" + ",".join(map(str, range(1000))), 400),
    "query type 100 tokens": _query("task_types=" + ",".join(map(str, range(100))), 200),
    "query limit 400 digits": _query("limit=" + "9" * 400, 400),
    "query limit float": _query("limit=1e3", 400),
    "query after -1": _query("after=-1", 400),
    "query state_id 2^100": _query(f"state_id={2**100}", 400),
    "query state_id unicode digits": _query("state_id=%D9%A3", 400),  # ARABIC-INDIC THREE
    "query extensions NUL": _query("extensions=%00", 200),
    "query repeated 500 times": _query("&".join(["state_id=1"] * 500), 200),
}


def _send(served: Served, case: Case) -> httpx.Response:
    return served.client.request(case.method, case.path, headers=case.headers, content=case.body)


@pytest.mark.parametrize("name", list(CORPUS))
def test_a_nasty_input_gets_a_clear_answer_and_the_bridge_stays_up(
    served: Served, name: str
) -> None:
    case = CORPUS[name]
    response = _send(served, case)
    TRIED[str(response.status_code)] += 1
    assert response.status_code in case.expect, (response.status_code, response.text[:500])
    assert_clear(response, ours=case.method != "HEAD")
    if case.check is not None:
        case.check(response, served.client)
    served.assert_up()


# --- HTTP framing, over a raw socket ---------------------------------------------------------


def _head(port: int, lines: list[str]) -> bytes:
    return ("\r\n".join([*lines, f"Host: 127.0.0.1:{port}", "", ""])).encode()


def _status(data: bytes) -> int:
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", data)
    assert match, data[:200]
    return int(match.group(1))


def _exchange(port: int, head: bytes, body: bytes = b"", chunk: bytes = b"") -> tuple[bytes, int]:
    """Send `head` and `body`, then `chunk` again and again (10 MB at most) until an answer
    starts; the answer's first bytes and how many body bytes went out."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body)
        sent += len(body)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            readable, _, _ = select.select([sock], [], [], 0 if chunk else 10)
            if readable:
                return sock.recv(65_536), sent
            if not chunk or sent >= 10 * 1024 * 1024:
                continue
            try:
                sock.sendall(chunk)
            except OSError:  # the server gave up on the body: its answer is waiting
                continue
            sent += len(chunk)
    raise AssertionError(f"no answer within 15 s after {sent} body bytes")


def test_a_10_mb_body_is_refused_with_413_before_it_is_read(served: Served) -> None:
    port = served.port
    head = _head(port, [f"POST {START} HTTP/1.1", "Content-Type: application/json",
                        f"Content-Length: {10 * 1024 * 1024}"])  # fmt: skip
    answer, sent = _exchange(port, head, b"{" + b" " * 65_535)
    assert _status(answer) == 413, answer[:300]
    assert sent == 65_536  # answered with nearly all of the 10 MB still unsent
    TRIED["413"] += 1

    head = _head(port, [f"POST {START} HTTP/1.1", "Content-Type: application/json",
                        "Transfer-Encoding: chunked"])  # fmt: skip
    piece = b"x" * 65_536
    chunk = b"%x\r\n" % len(piece) + piece + b"\r\n"
    answer, sent = _exchange(port, head, b"1\r\n{\r\n", chunk)
    assert _status(answer) == 413, answer[:300]
    assert sent < 10 * 1024 * 1024, sent
    TRIED["413"] += 1
    served.assert_up()


RAW_CASES = {
    # Answered by uvicorn's HTTP parser before the app: 400 in its own plain-text form.
    "Content-Length not a number": ["Content-Length: abc"],
    "negative Content-Length": ["Content-Length: -1"],
    "two Content-Lengths": ["Content-Length: 2", "Content-Length: 3"],
    "Content-Length and chunked": ["Content-Length: 2", "Transfer-Encoding: chunked"],
    "bad chunk size": ["Transfer-Encoding: chunked"],
}


@pytest.mark.parametrize("name", list(RAW_CASES))
def test_broken_http_framing_gets_a_4xx_and_never_a_5xx(served: Served, name: str) -> None:
    port = served.port
    lines = [f"POST {START} HTTP/1.1", "Content-Type: application/json", *RAW_CASES[name]]
    body = b"zz\r\n{}\r\n0\r\n\r\n" if "chunked" in " ".join(lines) else b"{}"
    answer, _ = _exchange(port, _head(port, lines), body)
    status = _status(answer)
    TRIED[str(status)] += 1
    assert status == 400, answer[:300]  # uvicorn's own, before the app (never a 5xx)
    served.assert_up()


def test_the_bridge_survived_every_input_with_bounded_memory(
    served: Served, report: Report
) -> None:
    served.assert_up()
    assert served.client.get("/healthz").status_code == 200
    after = served.bridge.rss_bytes()
    growth = after - served.rss_before
    classes = " ".join(f"{code}={count}" for code, count in sorted(TRIED.items()))
    report.add(
        f"faults: bridge-hostile-corpus inputs={sum(TRIED.values())} {classes}"
        f" 5xx={sum(n for c, n in TRIED.items() if c.startswith('5'))}"
        f" rss-before={served.rss_before / 2**20:.0f}MB rss-after={after / 2**20:.0f}MB"
    )
    assert growth < RSS_GROWTH_LIMIT, f"RSS grew by {growth / 2**20:.0f} MB"
    assert "unexpected error" not in served.bridge.log_text()
