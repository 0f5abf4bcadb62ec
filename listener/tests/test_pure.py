"""The functional core: retry arithmetic, pagination, base URLs, models, emulator resource rules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from listener.controlplane import PaginationError, RetryPolicy, resolve_base_url
from listener.controlplane.models import Deployment, Revision, RevisionStatus, Secret, dump_request
from listener.controlplane.pagination import collect_pages
from listener.controlplane.retry import backoff_delay, parse_retry_after, retryable_status
from listener.emulator.resources import materialize_resource_spec, patch_creates_revision


def test_full_jitter_backoff_is_uniform_under_a_capped_exponential() -> None:
    policy = RetryPolicy(base_delay=2, max_delay=10)
    assert [backoff_delay(n, policy, lambda: 1.0) for n in range(5)] == [2, 4, 8, 10, 10]
    assert backoff_delay(3, policy, lambda: 0.0) == 0


def test_retry_after_parsing() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize(
    ("status", "method", "expected"),
    [
        (503, "POST", True),
        (429, "PATCH", True),
        (500, "GET", True),
        (500, "POST", False),
        (404, "GET", False),
    ],
)
def test_which_statuses_are_retried(status: int, method: str, expected: bool) -> None:
    assert retryable_status(status, method) is expected


def test_retry_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts must be >= 1, got 0"):
        RetryPolicy(max_attempts=0)


def test_pagination_stops_on_a_short_page_and_refuses_repeats() -> None:
    data = list(range(250))
    calls: list[tuple[int, int]] = []

    def fetch(limit: int, offset: int) -> list[int]:
        calls.append((limit, offset))
        return data[offset : offset + limit]

    assert collect_pages(fetch, lambda x: x) == data
    assert calls == [(100, 0), (100, 100), (100, 200)]
    with pytest.raises(PaginationError, match="returned item 0 twice"):
        collect_pages(lambda limit, offset: data[:limit], lambda x: x, what="item")
    with pytest.raises(PaginationError, match="did not end after 3 pages"):
        collect_pages(lambda limit, offset: list(range(offset, offset + limit)), lambda x: x, max_pages=3)


def test_base_urls_come_from_the_region_map() -> None:
    assert resolve_base_url(region="eu") == "https://eu.api.host.langchain.com"
    assert resolve_base_url(self_hosted_url="https://ls.example.com/") == "https://ls.example.com/api-host"
    assert resolve_base_url(url="http://127.0.0.1:8900/") == "http://127.0.0.1:8900"
    with pytest.raises(
        ValueError, match=r"region must be one of \['apac', 'aws-us', 'eu', 'us'\], got 'mars'"
    ):
        resolve_base_url(region="mars")
    with pytest.raises(ValueError, match="url must be an http\\(s\\) URL with a host, got 'ftp://x'"):
        resolve_base_url(url="ftp://x")
    with pytest.raises(ValueError, match="exactly one of"):
        resolve_base_url(region="us", url="http://x")


def _deployment(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "id": "6f1c1e0e-1111-4111-8111-111111111111",
        "tenant_id": "6f1c1e0e-2222-4111-8111-111111111111",
        "name": "a",
        "source": "external_docker",
        "source_config": {"listener_id": None},
        "source_revision_config": {"image_uri": "x"},
        "secrets": [{"name": "K", "value": "s3cr3t"}],
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "status": "READY",
        "latest_revision_id": None,
        "active_revision_id": None,
    }
    body.update(overrides)
    return body


def test_response_models_tolerate_new_fields_but_not_missing_ones() -> None:
    dep = Deployment.model_validate(_deployment(brand_new_field={"x": 1}, status="SOMETHING_NEW"))
    assert dep.model_extra == {"brand_new_field": {"x": 1}}
    assert dep.status.value == "UNKNOWN"  # an unlisted status degrades to the spec's UNKNOWN
    assert "s3cr3t" not in repr(dep)
    assert "s3cr3t" not in dep.model_dump_json()
    with pytest.raises(ValueError, match="latest_revision_id\n  Field required"):
        Deployment.model_validate({k: v for k, v in _deployment().items() if k != "latest_revision_id"})
    with pytest.raises(ValueError, match="created_at\n  Input should be a valid datetime"):
        Revision.model_validate(
            {
                "id": "6f1c1e0e-1111-4111-8111-111111111111",
                "created_at": "yesterday",
                "updated_at": "x",
                "status": "DEPLOYED",
            }
        )
    assert RevisionStatus("DEPLOYED") is RevisionStatus.DEPLOYED


def test_secret_values_are_revealed_only_in_request_bodies() -> None:
    secret = Secret(name="K", value=SecretStr("v"))
    assert "'v'" not in repr(secret)
    assert secret.model_dump(mode="json") == {"name": "K", "value": "**********"}
    from listener.controlplane import new_image_revision

    assert dump_request(new_image_revision("img", secrets={"K": "v"})) == {
        "source_revision_config": {"image_uri": "img"},
        "secrets": [{"name": "K", "value": "v"}],
    }


def test_resource_spec_defaults_follow_the_documented_rules() -> None:
    spec = materialize_resource_spec({"cpu": 2, "memory_mb": 512, "redis_memory_mb": 256})
    assert (spec["cpu_limit"], spec["memory_limit_mb"]) == (4.0, 1024)
    assert (spec["queue_cpu"], spec["queue_memory_mb"], spec["queue_memory_limit_mb"]) == (2, 512, 1024)
    assert spec["redis_memory_limit_mb"] == 256
    assert materialize_resource_spec({"cpu": 8})["cpu_limit"] == 16.0


def test_which_patches_make_a_revision() -> None:
    assert patch_creates_revision({"source_revision_config": {"image_uri": "x"}})
    assert patch_creates_revision({"source_config": {"resource_spec": {}}})
    assert patch_creates_revision({"secrets": [{"name": "a", "value": "b"}]})
    assert not patch_creates_revision({"secrets": []})
    assert not patch_creates_revision({"source_config": {"custom_url": "u"}, "source_revision_config": {}})


def test_client_turns_an_unusable_response_into_a_typed_error() -> None:
    import httpx

    from listener.controlplane import ControlPlaneClient, ControlPlaneConfig, InvalidResponseError

    body = {"resources": [{k: v for k, v in _deployment().items() if k != "id"}], "offset": 1}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
    config = ControlPlaneConfig(base_url="http://cp.test", api_key="k")
    with (
        ControlPlaneClient(config, transport=transport) as client,
        pytest.raises(InvalidResponseError) as info,
    ):
        client.list_deployments()
    assert str(info.value) == (
        "GET /v2/deployments returned a DeploymentsList the client cannot use: resources.0.id: Field required"
    )
    assert "s3cr3t" not in str(info.value)
