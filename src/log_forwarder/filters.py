"""Which events are forwarded: include or exclude by type code, or by the category names
Auth0 Log Streams use (`auth.login.fail`, `management.success`, …), so a filter written for a
log stream means the same here.

A filtered-out event is still read, remembered and moves the checkpoint like any other: it is
counted as filtered (`EventsFiltered`), never as lost, and never read again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .event_types import EVENT_TYPES

# Auth0's Log Streams event filter categories, by the names the Management API gives them
# (node-auth0 LogStreamFilterGroupNameEnum), with the codes Auth0's "Log Stream Filters" page lists
# for each (auth0/docs-v2, docs/customize/log-streams/event-filters.mdx, 2026-08). That page
# documents no codes for auth.ancillary.*, and none in English for management.fail (`fapi` comes
# from its Japanese and French versions). `other` is "unclassified events": here, every code of
# event_types.py that no other category lists.
_LISTED: Mapping[str, frozenset[str]] = {
    "actions": frozenset({"actions_execution_failed"}),
    "auth.ancillary.fail": frozenset(),
    "auth.ancillary.success": frozenset(),
    "auth.login.fail": frozenset({"f", "fc", "fco", "fcoa", "fens", "fp", "fu"}),
    "auth.login.notification": frozenset({"w"}),
    "auth.login.success": frozenset({"s", "scoa", "sens"}),
    "auth.logout.fail": frozenset({"flo", "oidc_backchannel_logout_failed"}),
    "auth.logout.success": frozenset({"oidc_backchannel_logout_succeeded", "slo"}),
    "auth.signup.fail": frozenset({"fs"}),
    "auth.signup.success": frozenset({"ss"}),
    "auth.silent_auth.fail": frozenset({"fsa"}),
    "auth.silent_auth.success": frozenset({"ssa"}),
    "auth.token_exchange.fail": frozenset(
        {
            "feacft",
            "feccft",
            "fede",
            "feoobft",
            "feotpft",
            "fepft",
            "fepotpft",
            "fercft",
            "ferrt",
            "fertft",
        }
    ),
    "auth.token_exchange.success": frozenset(
        {"seacft", "seccft", "sede", "seoobft", "seotpft", "sepft", "sercft", "sertft"}
    ),
    "management.fail": frozenset({"fapi"}),
    "management.success": frozenset({"mgmt_api_read", "sapi"}),
    "scim.event": frozenset({"fscim", "sscim"}),
    "system.notification": frozenset(
        {
            "admin_update_launch",
            "api_limit",
            "coff",
            "con",
            "depnote",
            "fcpro",
            "fui",
            "limit_delegation",
            "limit_mu",
            "limit_wc",
            "sys_os_update_end",
            "sys_os_update_start",
            "sys_update_end",
            "sys_update_start",
        }
    ),
    "user.fail": frozenset(
        {
            "fce",
            "fcp",
            "fcpn",
            "fcpr",
            "fcu",
            "fd",
            "fdeaz",
            "fdecc",
            "fdu",
            "fn",
            "fv",
            "fvr",
            "ss_sso_failure",
        }
    ),
    "user.notification": frozenset(
        {
            "cs",
            "gd_enrollment_complete",
            "gd_start_enroll",
            "gd_unenroll",
            "gd_update_device_account",
            "ss_sso_info",
            "ublkdu",
        }
    ),
    "user.success": frozenset(
        {"sce", "scp", "scpn", "scpr", "scu", "sdu", "srrt", "ss_sso_success", "sui", "sv", "svr"}
    ),
}
CATEGORIES: Mapping[str, frozenset[str]] = {
    **_LISTED,
    "other": frozenset(EVENT_TYPES) - frozenset().union(*_LISTED.values()),
}


@dataclass(frozen=True, slots=True)
class EventFilter:
    """`include`: only these codes (None: all); `exclude`: never these."""

    include: frozenset[str] | None = None
    exclude: frozenset[str] = frozenset()

    @property
    def active(self) -> bool:
        return self.include is not None or bool(self.exclude)

    def keeps(self, raw: Mapping[str, Any]) -> bool:
        code = raw.get("type")
        if self.include is not None and code not in self.include:
            return False
        return code not in self.exclude


def expand(names: Iterable[str]) -> frozenset[str]:
    """Type codes for a list of codes and category names; KeyError names an unknown category."""
    codes: set[str] = set()
    for name in names:
        if "." in name or name in ("actions", "other"):
            codes |= CATEGORIES[name]
        else:
            codes.add(name)
    return frozenset(codes)
