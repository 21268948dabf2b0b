"""Optional authentication of the bridge's task routes: a bearer token or an API key.

`UCS_BRIDGE_AUTH_TOKENS` lists the accepted secrets, comma separated; empty (the default) turns
authentication off, so `ucs-tasks dev` stays open. A caller presents one as
`Authorization: Bearer <token>` or as `X-API-Key: <token>`. Every credential presented is
compared with every configured token, without an early exit, by `hmac.compare_digest` over
SHA-256 digests (equal lengths: the time taken tells neither how much of a token matched, nor
its length, nor which token). `/healthz`, `/readyz` and the OpenAPI document stay open.
Tokens are never logged, echoed in an answer or kept in clear text after start-up.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Protocol

from producer_tools.bridge.errors import UnauthorizedError
from producer_tools.bridge.settings import BridgeConfig

API_KEY_HEADER = "X-API-Key"
CHALLENGE = 'Bearer realm="ucs-tasks"'
"""`WWW-Authenticate` of a 401 (RFC 6750); a refused token adds `error="invalid_token"`."""


def _digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


def configured_tokens(settings: BridgeConfig) -> list[str]:
    """The accepted tokens; ValueError (naming a token by position, never by value) when one
    cannot travel in an HTTP header."""
    raw = settings.bridge.auth_tokens.get_secret_value()
    tokens = [token.strip() for token in raw.split(",") if token.strip()]
    for number, token in enumerate(tokens, 1):
        if not all("!" <= char <= "~" for char in token):
            raise ValueError(
                f"UCS_BRIDGE_AUTH_TOKENS: token {number} of {len(tokens)} must hold printable "
                "ASCII characters only, without spaces (0x21-0x7E)"
            )
    return tokens


class HeaderLists(Protocol):
    """A request's headers as `check` reads them: every value of a name, in any case
    (Starlette's `Headers`, the bridge's `inputs.RequestHeaders`)."""

    def getlist(self, key: str, /) -> list[str]:
        """Every value of the header `key` (any case), decoded as latin-1, in order."""
        ...


def presented_credentials(headers: HeaderLists) -> list[bytes]:
    """Every credential the request presents: Bearer tokens and API keys (raw header bytes)."""
    found: list[bytes] = []
    for value in headers.getlist("authorization"):
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            found.append(token.strip().encode("latin-1"))  # Starlette decoded it as latin-1
    found.extend(
        value.strip().encode("latin-1")
        for value in headers.getlist(API_KEY_HEADER)
        if value.strip()
    )
    return found


class BridgeAuth:
    """Checks a request's credentials against the configured tokens (or lets all through)."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._digests = tuple(_digest(token.encode()) for token in tokens)

    @classmethod
    def from_settings(cls, settings: BridgeConfig) -> BridgeAuth:
        """From `UCS_BRIDGE_AUTH_TOKENS` (ValueError at start-up when a token is unusable)."""
        return cls(configured_tokens(settings))

    @property
    def enabled(self) -> bool:
        """Whether requests must present a token."""
        return bool(self._digests)

    def check(self, headers: HeaderLists) -> None:
        """Return when authentication is off or a presented credential is accepted; else raise
        UnauthorizedError (401)."""
        if not self._digests:
            return
        presented = presented_credentials(headers)
        if not presented:
            raise UnauthorizedError(
                "Unauthorized: send a token as `Authorization: Bearer <token>` or as "
                f"`{API_KEY_HEADER}: <token>`.",
                headers={"WWW-Authenticate": CHALLENGE},
            )
        accepted = False
        for credential in presented:
            digest = _digest(credential)
            for expected in self._digests:  # all of them, whatever matched already
                accepted |= hmac.compare_digest(digest, expected)
        if not accepted:
            raise UnauthorizedError(
                "Unauthorized: the token presented is not accepted.",
                headers={"WWW-Authenticate": f'{CHALLENGE}, error="invalid_token"'},
            )
