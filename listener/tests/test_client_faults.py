"""Retries, backoff and errors of the client against the emulator's injected faults, over real sockets.

Every test counts the requests the emulator received, so "bounded retries" is asserted, not assumed; the
client's sleep
is a recorder, so the backoff schedule is asserted without waiting.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from listener.controlplane import (
    AuthenticationError,
    ConflictError,
    ControlPlaneClient,
    DeploymentNotEnabledError,
    InvalidResponseError,
    ListenersNotAllowedError,
    NotFoundError,
    PaginationError,
    RateLimitedError,
    RequestValidationError,
    ServerError,
    TransportError,
    WorkspaceRequiredError,
    external_docker_deployment,
)
from listener.emulator import Emulator

MISSING = "6f1c1e0e-1111-4111-8111-111111111111"
IMAGE = "registry.example/agent@sha256:" + "a" * 64


def _seed_listeners(client: ControlPlaneClient, n: int) -> None:
    for i in range(n):
        client.create_listener(f"cluster-{i:03d}", ["agents"])


def test_5xx_on_get_is_retried_with_capped_full_jitter_backoff(
    client: ControlPlaneClient, emulator: Emulator, sleeps: Any
) -> None:
    emulator.faults.add(kind="error", status=502, method="GET", path="/v2/listeners", times=3)
    assert client.list_listeners() == []
    assert emulator.request_count("GET", "/v2/listeners") == 4
    # random() = 0.5, base 1 s, cap 8 s: half of 1, 2, 4.
    assert sleeps.calls == [0.5, 1.0, 2.0]


def test_persistent_5xx_stops_after_max_attempts(
    client: ControlPlaneClient, emulator: Emulator, sleeps: Any
) -> None:
    emulator.faults.add(kind="error", status=500, detail="database on fire", path="/v2/listeners")
    with pytest.raises(ServerError) as info:
        client.list_listeners()
    assert emulator.request_count("GET", "/v2/listeners") == 4
    assert len(sleeps.calls) == 3
    assert info.value.status_code == 500
    assert str(info.value) == (
        "The control plane failed GET /v2/listeners with HTTP 500 after 4 attempt(s). "
        "Server said: database on fire"
    )


def test_backoff_is_capped(make_client: Any, emulator: Emulator, sleeps: Any) -> None:
    from listener.controlplane import RetryPolicy

    client = make_client(retry=RetryPolicy(max_attempts=6, base_delay=1.0, max_delay=3.0))
    emulator.faults.add(kind="error", status=504, path="/v2/listeners")
    with pytest.raises(ServerError):
        client.list_listeners()
    assert sleeps.calls == [0.5, 1.0, 1.5, 1.5, 1.5]
    assert emulator.request_count("GET", "/v2/listeners") == 6


def test_500_on_create_is_not_retried(client: ControlPlaneClient, emulator: Emulator, sleeps: Any) -> None:
    emulator.faults.add(kind="error", status=500, method="POST", path="/v2/listeners", times=1)
    with pytest.raises(ServerError, match="after 1 attempt"):
        client.create_listener("eks-1", ["agents"])
    assert emulator.request_count("POST", "/v2/listeners") == 1
    assert sleeps.calls == []


def test_429_honours_retry_after_even_on_create(
    client: ControlPlaneClient, emulator: Emulator, sleeps: Any
) -> None:
    emulator.faults.add(kind="rate_limit", retry_after=7, method="POST", path="/v2/listeners", times=2)
    listener = client.create_listener("eks-1", ["agents"])
    assert listener.compute_id == "eks-1"
    assert sleeps.calls == [7.0, 7.0]
    assert emulator.request_count("POST", "/v2/listeners") == 3
    assert len(emulator.store.listeners) == 1


def test_503_with_retry_after_is_honoured(
    client: ControlPlaneClient, emulator: Emulator, sleeps: Any
) -> None:
    emulator.faults.add(kind="error", status=503, retry_after=3, path="/v2/listeners", times=1)
    assert client.list_listeners() == []
    assert sleeps.calls == [3.0]


def test_retry_after_beyond_the_cap_fails_fast_with_the_hint(
    client: ControlPlaneClient, emulator: Emulator, sleeps: Any
) -> None:
    emulator.faults.add(kind="rate_limit", retry_after=600, path="/v2/listeners")
    with pytest.raises(RateLimitedError) as info:
        client.list_listeners()
    assert info.value.retry_after == 600
    assert "retry after 600s" in str(info.value)
    assert emulator.request_count() == 1
    assert sleeps.calls == []


def test_persistent_429_gives_up_after_max_attempts(
    client: ControlPlaneClient, emulator: Emulator, sleeps: Any
) -> None:
    emulator.faults.add(kind="rate_limit", retry_after=2, path="/v2/listeners")
    with pytest.raises(RateLimitedError, match="after 4 attempt"):
        client.list_listeners()
    assert emulator.request_count() == 4
    assert sleeps.calls == [2.0, 2.0, 2.0]


def test_dropped_connection_on_get_is_retried(
    client: ControlPlaneClient, emulator: Emulator, sleeps: Any
) -> None:
    emulator.faults.add(kind="drop_connection", path="/v2/listeners", times=2)
    assert client.list_listeners() == []
    assert emulator.request_count() == 3
    assert sleeps.calls == [0.5, 1.0]


def test_dropped_connection_everywhere_ends_in_a_transport_error(
    client: ControlPlaneClient, emulator: Emulator, sleeps: Any
) -> None:
    emulator.faults.add(kind="drop_connection", path="/v2/listeners")
    with pytest.raises(
        TransportError, match=r"GET /v2/listeners to http://127\.0\.0\.1:\d+ failed after 4 attempt"
    ):
        client.list_listeners()
    assert emulator.request_count() == 4


def test_truncated_response_to_a_create_is_not_retried(
    client: ControlPlaneClient, emulator: Emulator, sleeps: Any
) -> None:
    emulator.faults.add(kind="truncated_body", method="POST", path="/v2/listeners", times=1)
    with pytest.raises(TransportError, match="not retried: may have been processed"):
        client.create_listener("eks-1", ["agents"])
    assert emulator.request_count("POST", "/v2/listeners") == 1
    assert len(emulator.store.listeners) == 1  # it was processed: a blind retry would have hit a 409
    with pytest.raises(ConflictError):
        client.create_listener("eks-1", ["agents"])


def test_connection_refused_is_retried_then_reported(make_client: Any, sleeps: Any) -> None:
    import socket

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = make_client(base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(TransportError, match=r"after 4 attempt.*ConnectError"):
        client.list_listeners()
    assert len(sleeps.calls) == 3


def test_read_timeout_from_latency_is_retried_and_bounded(
    make_client: Any, emulator: Emulator, sleeps: Any
) -> None:
    client = make_client(timeout=0.2)
    emulator.faults.add(kind="latency", delay=1.0, path="/v2/listeners", times=2)
    assert client.list_listeners() == []
    assert emulator.request_count() == 3
    assert len(sleeps.calls) == 2


def test_latency_below_the_timeout_is_just_slow(make_client: Any, emulator: Emulator, sleeps: Any) -> None:
    client = make_client(timeout=5)
    emulator.faults.add(kind="latency", delay=0.1, path="/v2/listeners", times=1)
    assert client.list_listeners() == []
    assert emulator.request_count() == 1
    assert sleeps.calls == []


def test_malformed_json_is_a_clear_error_not_retried(client: ControlPlaneClient, emulator: Emulator) -> None:
    emulator.faults.add(kind="malformed_json", path="/v2/listeners", times=1)
    with pytest.raises(
        InvalidResponseError, match=r"GET /v2/listeners returned HTTP 200 with a body that is not"
    ):
        client.list_listeners()
    assert emulator.request_count() == 1


def test_repeated_page_is_refused(client: ControlPlaneClient, emulator: Emulator) -> None:
    _seed_listeners(client, 150)
    emulator.requests.clear()
    emulator.faults.add(kind="repeat_page", path="/v2/listeners")
    with pytest.raises(PaginationError, match=r"twice while paging .*ignores 'offset'"):
        client.list_listeners()
    assert emulator.request_count("GET", "/v2/listeners") == 2


def test_short_page_ends_the_listing(client: ControlPlaneClient, emulator: Emulator) -> None:
    # A page shorter than the limit is, by the protocol, the last page: the client cannot tell a truncated
    # page
    # from the end. This is why the later listener must confirm a missing deployment with GET -> 404 before
    # pruning.
    _seed_listeners(client, 150)
    emulator.requests.clear()
    emulator.faults.add(kind="short_page", drop=5, path="/v2/listeners", times=1)
    assert len(client.list_listeners()) == 95
    assert emulator.request_count("GET", "/v2/listeners") == 1


def test_faults_via_the_admin_endpoint(client: ControlPlaneClient, emulator: Emulator, sleeps: Any) -> None:
    response = client.request("POST", "/_emulator/faults", json={"kind": "error", "status": 502, "times": 1})
    assert response.status_code == 201
    assert client.list_listeners() == []
    assert emulator.request_count("GET", "/v2/listeners") == 2
    assert client.request("GET", "/_emulator/faults").json() == []  # used up
    with pytest.raises(RequestValidationError, match=r"body\.kind: Input should be 'latency'"):
        client.request("POST", "/_emulator/faults", json={"kind": "meteor"})


# --- error mapping ---


def test_401_wrong_key(make_client: Any, emulator: Emulator) -> None:
    client = make_client(api_key="lsv2_wrong")
    with pytest.raises(
        AuthenticationError, match=r"rejected the API key \(401 Unauthorized\) on GET /v2/listeners"
    ):
        client.list_listeners()
    assert emulator.request_count() == 1


def test_403_requires_workspace(make_client: Any, emulator: Emulator) -> None:
    emulator.settings.require_tenant = True
    client = make_client(tenant_id=None)
    with pytest.raises(WorkspaceRequiredError, match=r"organization-scoped .* set the workspace ID"):
        client.list_deployments()


def test_403_not_enabled(client: ControlPlaneClient, emulator: Emulator) -> None:
    emulator.settings.deployments_enabled = False
    with pytest.raises(DeploymentNotEnabledError, match="not enabled for this organization"):
        client.list_deployments()


def test_403_listeners_need_a_plan(client: ControlPlaneClient, emulator: Emulator) -> None:
    emulator.settings.listeners_allowed = False
    with pytest.raises(ListenersNotAllowedError, match="self-hosted enterprise plan") as info:
        client.create_listener("eks-1", ["agents"])
    assert info.value.status_code == 403
    assert "Listeners cannot be created for LangSmith workspace ID" in info.value.detail
    with pytest.raises(ListenersNotAllowedError):
        client.get_listener(MISSING)


def test_404_carries_the_server_detail(client: ControlPlaneClient, emulator: Emulator) -> None:
    with pytest.raises(NotFoundError) as info:
        client.get_listener(MISSING)
    assert info.value.detail == f"Listener ID {MISSING} not found."
    assert (
        str(info.value)
        == f"Not found (404) on GET /v2/listeners/{MISSING}. Server said: Listener ID {MISSING} not found."
    )
    with pytest.raises(NotFoundError, match=f"Deployment ID {MISSING} not found"):
        client.list_revisions(MISSING)


def test_409_duplicate_listener(client: ControlPlaneClient, emulator: Emulator) -> None:
    client.create_listener("eks-1", ["agents"])
    with pytest.raises(ConflictError, match="compute ID 'eks-1' already exists"):
        client.create_listener("eks-1", ["other"])


def test_422_lists_every_failing_field(client: ControlPlaneClient, emulator: Emulator) -> None:
    with pytest.raises(RequestValidationError) as info:
        client.request(
            "POST", "/v2/deployments", json={"name": 5, "source": "ftp", "source_config": {}, "secrets": []}
        )
    fields = {f.where: f.msg for f in info.value.errors}
    assert fields == {
        "body.name": "Input should be a valid string",
        "body.source": "Input should be 'github', 'external_docker', 'internal_docker' or 'internal_source'",
        "body.source_revision_config": "Field required",
    }
    assert "body.name: Input should be a valid string; body.source:" in str(info.value)


def test_400_business_rule(client: ControlPlaneClient, emulator: Emulator) -> None:
    from listener.controlplane import BadRequestError

    listener = client.create_listener("eks-1", ["agents"])
    with pytest.raises(BadRequestError, match="Namespace 'elsewhere' is not one of the namespaces"):
        client.create_deployment(
            external_docker_deployment(
                name="a", image_uri=IMAGE, listener_id=listener.id, k8s_namespace="elsewhere"
            )
        )


# --- the key never leaks ---


def test_api_key_never_in_reprs_messages_or_logs(
    make_client: Any, emulator: Emulator, caplog: pytest.LogCaptureFixture, api_key: str
) -> None:
    API_KEY = api_key
    caplog.set_level(logging.DEBUG)
    client = make_client()
    emulator.faults.add(kind="error", status=500, detail=f"echoing {API_KEY}", path="/v2/listeners")
    with pytest.raises(ServerError) as server_error:
        client.list_listeners()
    emulator.faults.clear()
    emulator.faults.add(kind="drop_connection", path="/v2/listeners")
    with pytest.raises(TransportError) as transport_error:
        client.list_listeners()
    wrong = make_client(api_key=API_KEY + "-wrong")
    with pytest.raises(AuthenticationError) as auth_error:
        wrong.list_listeners()
    texts = [
        repr(client),
        str(client),
        repr(client.config),
        str(client.config),
        client.config.model_dump_json(),
        repr(wrong.config),
        *(
            f"{exc!s} {exc!r} {exc.detail!r}"
            for exc in (server_error.value, transport_error.value, auth_error.value)
        ),
        *(record.getMessage() for record in caplog.records),
        caplog.text,
    ]
    assert caplog.records  # the retries were logged
    for text in texts:
        assert API_KEY not in text
    assert "**********" in server_error.value.detail
