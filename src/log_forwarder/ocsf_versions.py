"""The OCSF releases the mapping writes (OCSF_VERSION), apart from the mapping itself (ocsf.py).

The settings and the plans name a release whatever the output format; the mapping's tables (one
row per Auth0 code, built at import) are imported only where an OCSF line is written, so a
function writing Auth0's own format never loads them (bench/sigma.py: the cold start).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

# The OCSF class of a finding (Detection Finding): how a stored line is known for one.
DETECTION_FINDING: Final = 2004


@dataclass(frozen=True, slots=True)
class OcsfVersion:
    """What one OCSF release defines that this mapping depends on."""

    name: str
    # The enum of http_request.http_method (PATCH arrived in 1.6.0, ocsf-schema PR #1427).
    http_methods: frozenset[str]
    # user.type_id 4 "Service": the account a client-credentials exchange is made with.
    service_user_type: bool
    # Account Change's auth_factors, for MFA Factor Enable/Disable.
    account_change_factors: bool


_METHODS_1_5: Final = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT", "TRACE"}
)
OCSF_VERSIONS: Final[Mapping[str, OcsfVersion]] = MappingProxyType(
    {
        "1.5.0": OcsfVersion("1.5.0", _METHODS_1_5, False, False),
        "1.8.0": OcsfVersion("1.8.0", _METHODS_1_5 | {"PATCH"}, True, True),
    }
)
DEFAULT_OCSF_VERSION: Final = OCSF_VERSIONS["1.5.0"]
