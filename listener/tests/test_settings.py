"""The listener's settings: defaults, and errors that name the variable without leaking the key."""

from __future__ import annotations

import pytest

from listener.settings import SettingsError, load_settings, unknown_variables

KEY = "lsv2_sk_settings_test_key_0123456789"
BASE = {
    "LISTENER_API_KEY": KEY,
    "LISTENER_WORKSPACE_ID": "0a000000-0000-4000-8000-00000000000a",
    "LISTENER_LISTENER_ID": "0b000000-0000-4000-8000-00000000000b",
    "LISTENER_REGION": "eu",
    "LISTENER_NAMESPACES": "agents, agents-batch",
}


def env(**overrides: str | None) -> dict[str, str]:
    merged = {**BASE, **{f"LISTENER_{k.upper()}": v for k, v in overrides.items()}}
    return {k: v for k, v in merged.items() if v is not None}


def error_of(environ: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ)
    return str(caught.value)


def test_defaults():
    settings = load_settings(env())
    assert settings.base_url == "https://eu.api.host.langchain.com"
    assert settings.namespaces == ["agents", "agents-batch"]
    assert settings.poll_interval_seconds == 10.0
    assert settings.poll_jitter == 0.1
    assert settings.status_reporting == "heartbeat"
    assert settings.data_retention == "retain"
    assert settings.queue_command == ("/storage/queue_entrypoint.sh",)
    assert KEY not in repr(settings)
    assert KEY not in str(settings)


def test_explicit_url_and_older_queue_entrypoint():
    settings = load_settings(
        env(
            region=None,
            control_plane_url="http://127.0.0.1:8900/",
            queue_command="python -m langgraph_api.queue_entrypoint",
        )
    )
    assert settings.base_url == "http://127.0.0.1:8900"
    assert settings.queue_command == ("python", "-m", "langgraph_api.queue_entrypoint")
    assert settings.render_options().queue_command == ("python", "-m", "langgraph_api.queue_entrypoint")


def test_missing_variables_are_named():
    message = error_of(env(api_key=None, listener_id=None))
    assert "LISTENER_API_KEY: is required" in message
    assert "LISTENER_LISTENER_ID: is required" in message


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"namespaces": "agents,kube-system"},
            "LISTENER_NAMESPACES='agents,kube-system': 'kube-system' is reserved",
        ),
        ({"namespaces": "default"}, "'default' is reserved"),
        ({"namespaces": "Agents"}, "'Agents' is not a DNS-1123 label"),
        ({"namespaces": ""}, "at least one namespace"),
        ({"namespaces": "a,a"}, "listed twice"),
        ({"poll_interval_seconds": "soon"}, "LISTENER_POLL_INTERVAL_SECONDS='soon'"),
        ({"poll_interval_seconds": "0.1"}, "greater than or equal to 1"),
        ({"routing": "istio"}, "LISTENER_ROUTING='istio'"),
        ({"routing": "httproute"}, "needs LISTENER_HOSTNAME"),
        ({"routing": "httproute", "hostname": "agents.example.com"}, "needs LISTENER_GATEWAY_NAME"),
        ({"routing": "ingress", "hostname": "agents.example.com"}, "cannot serve several namespaces"),
        ({"region": None}, "set LISTENER_REGION"),
        ({"control_plane_url": "http://x"}, "only one of"),
        ({"store_mode": "external"}, "needs LISTENER_EXTERNAL_STORES_SECRET"),
        ({"workspace_id": "not-a-uuid"}, "LISTENER_WORKSPACE_ID='not-a-uuid'"),
        ({"leader_election": "true"}, "needs LISTENER_POD_NAMESPACE and LISTENER_POD_NAME"),
        ({"leader_election": "yes please"}, "LISTENER_LEADER_ELECTION='yes please'"),
        ({"pod_namespace": "Lang_Smith"}, "LISTENER_POD_NAMESPACE='Lang_Smith': is not a DNS-1123 label"),
        ({"lease_name": "my lease"}, "LISTENER_LEASE_NAME='my lease': is not a DNS-1123 subdomain"),
        ({"health_port": "0"}, "LISTENER_HEALTH_PORT='0'"),
        ({"health_port": "70000"}, "LISTENER_HEALTH_PORT='70000'"),
        ({"shutdown_timeout_seconds": "0"}, "LISTENER_SHUTDOWN_TIMEOUT_SECONDS='0'"),
        ({"log_format": "yaml"}, "LISTENER_LOG_FORMAT='yaml'"),
        ({"log_level": "LOUD"}, "LISTENER_LOG_LEVEL='LOUD'"),
        # Each of these passed validation and then failed every revision at the API server (422) or
        # the kubelet (InvalidImageName): Kubernetes' own name rules, checked at start instead.
        (
            {"routing": "httproute", "hostname": "https://Agents.example.com/", "gateway_name": "gw"},
            "LISTENER_HOSTNAME='https://Agents.example.com/': is not a host name",
        ),
        (
            {"routing": "httproute", "hostname": "10.0.0.1", "gateway_name": "gw"},
            "LISTENER_HOSTNAME='10.0.0.1': is not a host name",
        ),
        (
            {"routing": "httproute", "hostname": "a.example.com", "gateway_name": "My Gateway"},
            "LISTENER_GATEWAY_NAME='My Gateway': is not a DNS-1123 subdomain",
        ),
        ({"gateway_namespace": "Infra"}, "LISTENER_GATEWAY_NAMESPACE='Infra': is not a DNS-1123 label"),
        ({"ingress_class_name": "NGINX!"}, "LISTENER_INGRESS_CLASS_NAME='NGINX!': is not a DNS-1123"),
        (
            {"store_mode": "external", "external_stores_secret": "My_Secret"},
            "LISTENER_EXTERNAL_STORES_SECRET='My_Secret': is not a DNS-1123",
        ),
        ({"storage_class_name": "gp3 fast"}, "LISTENER_STORAGE_CLASS_NAME='gp3 fast': is not a DNS-1123"),
        (
            {"postgres_image": "Postgres:LATEST"},
            "LISTENER_POSTGRES_IMAGE='Postgres:LATEST': is not a valid image",
        ),
    ],
)
def test_bad_values_are_named(overrides, expected):
    message = error_of(env(**overrides))
    assert expected in message
    assert KEY not in message


def test_wildcard_hostnames_and_plain_names_are_accepted():
    settings = load_settings(
        env(
            routing="httproute",
            hostname="*.agents.example.com",
            gateway_name="shared-gw",
            gateway_namespace="infra",
            storage_class_name="gp3",
        )
    )
    assert settings.hostname == "*.agents.example.com"


@pytest.mark.parametrize("variable", ["control_plane_url", "langsmith_endpoint"])
def test_a_url_with_credentials_is_refused_without_echoing_them(variable: str):
    # They were accepted, then printed in the start line and in every control-plane error and log line
    # ("GET /v2/deployments to https://admin:<password>@host/api-host failed ...").
    url = "https://admin:hunter2-password@langsmith.example.com/" + (
        "api-host" if variable == "control_plane_url" else "api/v1"
    )
    message = error_of(env(region=None if variable == "control_plane_url" else "eu", **{variable: url}))
    assert f"LISTENER_{variable.upper()}='https://***@langsmith.example.com/" in message
    assert "must not carry credentials" in message
    assert "hunter2" not in message
    assert "admin" not in message


def test_a_url_with_whitespace_is_refused():
    assert "LISTENER_CONTROL_PLANE_URL" in error_of(
        env(region=None, control_plane_url="https://host /api-host")
    )


def test_a_prune_window_shorter_than_the_poll_interval_is_refused():
    # Each absence is observed once per poll and a gap of more than two windows restarts the streak:
    # polling every 15 min with the 5-min window, a deleted deployment was never pruned.
    message = error_of(env(poll_interval_seconds="900"))
    assert "LISTENER_PRUNE_WINDOW_SECONDS=300 is shorter than LISTENER_POLL_INTERVAL_SECONDS=900" in message
    assert (
        load_settings(env(poll_interval_seconds="900", prune_window_seconds="900")).prune_window_seconds
        == 900
    )


def test_api_key_value_never_echoed():
    message = error_of(env(api_key=None, namespaces="kube-x"))
    assert KEY not in message


def test_reads_the_process_environment(monkeypatch):
    for name, value in env().items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.namespaces == ["agents", "agents-batch"]
    assert settings.api_key.get_secret_value() == KEY


def test_probe_url_template():
    assert (
        load_settings(env()).probe_url("agents", "x-api", 8000)
        == "http://x-api.agents.svc.cluster.local:8000/ok"
    )
    assert "must contain {service} and {namespace}" in error_of(env(probe_url_template="http://fixed/ok"))


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # Each of these passed validation before and failed only when a rollout was checked.
        ("http://{service}.{namespace}:{prot}/ok", "not {prot}"),
        ("http://{service.__class__}.{namespace}/ok", "not {service.__class__}"),
        ("http://{service}.{namespace}/{0}", "not {0}"),
        ("http://{service!r}.{namespace}/ok", "not {service!r}"),
        ("http://{service:>9}.{namespace}/ok", "not {service:>9}"),
        ("http://{service}.{namespace/ok", "not a valid template"),
        ("{service}.{namespace}/ok", "http(s) URL"),
    ],
)
def test_probe_url_template_accepts_only_its_fields(template: str, expected: str):
    message = error_of(env(probe_url_template=template))
    assert "LISTENER_PROBE_URL_TEMPLATE" in message
    assert expected in message


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"rollout_timeout_seconds": "inf"}, "LISTENER_ROLLOUT_TIMEOUT_SECONDS"),
        ({"rollout_timeout_seconds": "nan"}, "LISTENER_ROLLOUT_TIMEOUT_SECONDS"),
        ({"rollout_timeout_seconds": "1e300"}, "LISTENER_ROLLOUT_TIMEOUT_SECONDS"),
        ({"unschedulable_grace_seconds": "1e300"}, "LISTENER_UNSCHEDULABLE_GRACE_SECONDS"),
        ({"unschedulable_grace_seconds": "inf"}, "LISTENER_UNSCHEDULABLE_GRACE_SECONDS"),
        ({"workers": "0"}, "LISTENER_WORKERS"),
        ({"workers": "1000"}, "LISTENER_WORKERS"),
        ({"workers": "four"}, "LISTENER_WORKERS"),
        ({"poll_interval_seconds": "inf"}, "LISTENER_POLL_INTERVAL_SECONDS"),
        ({"resync_interval_seconds": "nan"}, "LISTENER_RESYNC_INTERVAL_SECONDS"),
        ({"prune_window_seconds": "1"}, "LISTENER_PRUNE_WINDOW_SECONDS"),
        ({"prune_window_seconds": "inf"}, "LISTENER_PRUNE_WINDOW_SECONDS"),
        ({"prune_max_fraction": "0"}, "LISTENER_PRUNE_MAX_FRACTION"),
        ({"prune_max_fraction": "1.5"}, "LISTENER_PRUNE_MAX_FRACTION"),
        ({"postgres_image": "pgvector/pgvector:pg16 "}, "LISTENER_POSTGRES_IMAGE"),
        ({"langsmith_endpoint": "ls.example.com"}, "LISTENER_LANGSMITH_ENDPOINT"),
    ],
)
def test_every_number_is_bounded_and_every_value_checked(overrides, variable):
    # Issue 10: `inf` and 1e300 passed validation, then crashed the first rollout (timedelta overflow).
    assert variable in error_of(env(**overrides))


def test_every_default_fits_its_own_bounds():
    settings = load_settings(env())
    assert settings.prune_window_seconds == 300
    assert settings.prune_max_fraction == 0.1
    assert settings.prune_allow_empty is False
    assert settings.workers == 4
    assert settings.inventory_watch is False
    assert "@sha256:" in settings.postgres_image
    assert "@sha256:" in settings.redis_image


def test_unknown_variables_are_named_with_a_suggestion():
    warnings = unknown_variables(
        {
            **env(),
            "LISTENER_NAMESPACE": "agents",
            "LISTENER_ROLLOUT_TIMEOUT": "5",
            "LISTENER_ZZZ": "1",
            "HOME": "/",
        }
    )
    assert warnings == [
        "LISTENER_NAMESPACE is not a listener setting and is ignored (did you mean LISTENER_NAMESPACES?)",
        "LISTENER_ROLLOUT_TIMEOUT is not a listener setting and is ignored "
        "(did you mean LISTENER_ROLLOUT_TIMEOUT_SECONDS?)",
        "LISTENER_ZZZ is not a listener setting and is ignored",
    ]
    assert unknown_variables(env()) == []


def test_the_lease_name_defaults_to_one_per_listener():
    settings = load_settings(env(leader_election="true", pod_namespace="langsmith", pod_name="listener-0"))
    assert settings.lease == f"langsmith-listener-{settings.listener_id}"
    assert load_settings(env(lease_name="custom")).lease == "custom"
