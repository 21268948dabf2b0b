"""Tenancy: single-tenant mode ignores tenants; multi-tenant mode requires a configured one,
with the messages the Context Services reference documents."""

from __future__ import annotations

import pytest

from schemas.errors import EventValidationError
from schemas.replies import ErrorCode
from schemas.tenants import Tenancy


def test_without_configured_tenants_a_request_belongs_to_no_tenant() -> None:
    tenancy = Tenancy.parse("")
    assert not tenancy.multi
    assert tenancy.resolve("acme", "sales") == (None, None)


def test_a_configured_tenant_is_accepted_with_its_group() -> None:
    tenancy = Tenancy.parse(" acme, 101 ,,")
    assert tenancy.tenants == {"acme", "101"}
    assert tenancy.resolve("101", " sales ") == ("101", "sales")
    assert tenancy.resolve("acme", None) == ("acme", None)


def test_a_missing_tenant_gets_the_documented_message() -> None:
    with pytest.raises(EventValidationError) as caught:
        Tenancy.parse("acme").resolve(None, None)
    assert caught.value.code is ErrorCode.INVALID_TENANT
    assert caught.value.status == 400
    assert caught.value.message == (
        "Invalid tenant specified : no tenant specified in multi-tenant environment. "
        "Verify configuration and 'ContactCenterId' HTTP header."
    )
    assert [e.field for e in caught.value.errors] == ["ContactCenterId"]


def test_an_unknown_tenant_gets_the_documented_message() -> None:
    with pytest.raises(EventValidationError) as caught:
        Tenancy.parse("acme").resolve("globex", None)
    assert caught.value.message == (
        "Invalid tenant specified : specified tenant in HTTP header "
        "'ContactCenterId'='globex' not configured. Verify configuration."
    )
