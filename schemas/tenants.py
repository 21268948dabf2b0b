"""Tenants (multi-tenant Context Services): which one a request belongs to, checked once.

`UCS_TENANTS` lists the configured tenants (ids or names, comma separated); empty means
single-tenant mode, where a request's tenant is ignored and every task belongs to no tenant.
With tenants configured, every request names one (HTTP header `ContactCenterId`, Kafka
attribute `tenantid`) and gets the documented messages when it names none or an unknown one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from schemas._json_errors import display
from schemas.errors import EventValidationError
from schemas.replies import ErrorCode, FieldError

TENANT_HEADER: Final = "ContactCenterId"
GROUP_HEADER: Final = "GroupId"
MAX_TENANT_LENGTH: Final = 256

_MISSING: Final = (
    "Invalid tenant specified : no tenant specified in multi-tenant environment. Verify "
    "configuration and 'ContactCenterId' HTTP header."
)


def _unknown(value: str) -> str:
    return (
        "Invalid tenant specified : specified tenant in HTTP header "
        f"'ContactCenterId'='{display(value, 100)}' not configured. Verify configuration."
    )


def _refused(message: str, problem: str) -> EventValidationError:
    return EventValidationError(
        ErrorCode.INVALID_TENANT, [FieldError(field=TENANT_HEADER, problem=problem)], message
    )


@dataclass(frozen=True, slots=True)
class Tenancy:
    """The configured tenants; `Tenancy.parse("")` is single-tenant mode."""

    tenants: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, configured: str) -> Tenancy:
        """From `UCS_TENANTS`: comma-separated ids or names, blanks ignored."""
        return cls(frozenset(t.strip() for t in configured.split(",") if t.strip()))

    @property
    def multi(self) -> bool:
        """Whether tenants are configured (multi-tenant mode)."""
        return bool(self.tenants)

    def resolve(self, tenant: str | None, group: str | None) -> tuple[str | None, str | None]:
        """The (tenant, group) a request belongs to; in single-tenant mode (None, None).

        Raises EventValidationError (`invalid_tenant`, 400) with the documented messages when a
        multi-tenant request names no tenant or one that is not configured.
        """
        if not self.tenants:
            return None, None
        value = (tenant or "").strip()
        if not value:
            raise _refused(_MISSING, "is required in a multi-tenant environment")
        if value not in self.tenants:
            raise _refused(_unknown(value), "is not a configured tenant")
        group = (group or "").strip()[:MAX_TENANT_LENGTH] or None
        return value, group
