"""What every Context Services route depends on: their router, the bridge, authentication, the
caller's tenant, and the path parameters they share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Request

from producer_tools.bridge.state import Bridge, get_bridge
from schemas.tenants import GROUP_HEADER, TENANT_HEADER

tasks = APIRouter()
"""The Context Services routes (`writes`, `reads`), relative to the API root: `routes` serves
them under both roots."""
BridgeDep = Annotated[Bridge, Depends(get_bridge)]
ServiceId = Annotated[str, Path(description="The service's 64-bit id (1 .. 2^63-1).")]


async def authenticated(request: Request, bridge: BridgeDep) -> None:
    """401 unless authentication is off or the request presents an accepted token."""
    bridge.auth.check(request.headers)


AUTHENTICATED = [Depends(authenticated)]
"""On every route but /healthz and /readyz (openapi.PUBLIC_PATHS)."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: their tenant and group in multi-tenant mode, (None, None) otherwise."""

    tenant: str | None = None
    group: str | None = None


async def caller(
    bridge: BridgeDep,
    contact_center_id: Annotated[
        str | None,
        Header(
            alias=TENANT_HEADER,
            description="The caller's tenant (an id or a name of UCS_TENANTS): required when "
            "tenants are configured, ignored otherwise.",
        ),
    ] = None,
    group_id: Annotated[
        str | None,
        Header(
            alias=GROUP_HEADER,
            description="The caller's business unit, recorded with the tasks it starts "
            "(multi-tenant mode only).",
        ),
    ] = None,
) -> Caller:
    """The caller's tenant and group; in multi-tenant mode a missing or unknown
    `ContactCenterId` is a 400 with the documented messages (`schemas.tenants`)."""
    if not bridge.tenancy.multi:
        return SINGLE_TENANT
    tenant, group = bridge.tenancy.resolve(contact_center_id, group_id)
    return Caller(tenant, group)


SINGLE_TENANT = Caller()
CallerDep = Annotated[Caller, Depends(caller)]
"""On every Context Services route: another tenant's task is exactly an unknown one."""
