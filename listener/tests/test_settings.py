"""The listener's settings: defaults, and errors that name the variable without leaking the key."""

from __future__ import annotations

import pytest

from listener.settings import SettingsError, load_settings

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
    ],
)
def test_bad_values_are_named(overrides, expected):
    message = error_of(env(**overrides))
    assert expected in message
    assert KEY not in message


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
    assert load_settings(env()).probe_url_template.format(namespace="agents", service="x-api") == (
        "http://x-api.agents.svc.cluster.local:8000/ok"
    )
    assert "must contain {service} and {namespace}" in error_of(env(probe_url_template="http://fixed/ok"))


def test_the_lease_name_defaults_to_one_per_listener():
    settings = load_settings(env(leader_election="true", pod_namespace="langsmith", pod_name="listener-0"))
    assert settings.lease == f"langsmith-listener-{settings.listener_id}"
    assert load_settings(env(lease_name="custom")).lease == "custom"
