"""The listener-registration provider's methods against the control-plane emulator over real HTTP.

Every status the provider reacts to is the emulator's faithful copy of the real API's answers
(control-plane-api.md §4-5: 201 create, 409 duplicate compute_id, 404 unknown listener, 403 plan and
workspace messages, 204 delete). The API key must never appear in outputs, errors or logs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pulumi.dynamic import Config, ConfigureRequest

from components.registration import (
    ListenerInUseGuardProvider,
    ListenerRegistrationProvider,
    RegistrationError,
    registration_diff,
)
from listener.controlplane import ControlPlaneClient, ControlPlaneConfig, external_docker_deployment
from listener.emulator import BackgroundServer, Emulator

KEY = "lsv2_pt_registration_test_key_0000"
IMAGE = "registry.example.com/agents/a@sha256:" + "1" * 64


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    with BackgroundServer(Emulator(api_key=KEY)) as srv:
        yield srv


@pytest.fixture
def emulator(server: BackgroundServer) -> Iterator[Emulator]:
    emu = server.emulator
    emu.faults.clear()
    for table in (emu.store.listeners, emu.store.deployments, emu.store.revisions):
        table.clear()
    emu.store.settings.__init__()  # back to the defaults
    yield emu
    emu.faults.clear()


@pytest.fixture(autouse=True)
def _no_key_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    assert KEY not in caplog.text


def _no_wait_client(config: ControlPlaneConfig) -> ControlPlaneClient:
    return ControlPlaneClient(config, sleep=lambda _seconds: None)


@pytest.fixture
def provider() -> ListenerRegistrationProvider:
    p = ListenerRegistrationProvider(client_factory=_no_wait_client)
    p.configure(ConfigureRequest(Config({"langsmith-dataplane:api_key": KEY}, "langsmith-dataplane")))
    return p


@pytest.fixture
def client(server: BackgroundServer, emulator: Emulator) -> Iterator[ControlPlaneClient]:
    config = ControlPlaneConfig(base_url=server.url, api_key=KEY, tenant_id=emulator.tenant_id)
    with ControlPlaneClient(config) as c:
        yield c


def props(server: BackgroundServer, **overrides: Any) -> dict[str, Any]:
    """The inputs as the engine hands them to the provider (secrets already unwrapped)."""
    return {
        "control_plane_url": server.url,
        "workspace_id": server.emulator.tenant_id,
        "compute_id": "eks-prod",
        "namespaces": ["agents"],
        "api_key": KEY,
        "api_key_source": "api_key",
        "stack_key": "topology.listeners[0]",
        "workspace_key": "topology.workspaces[0].id",
        "adopt_listener_id": None,
        **overrides,
    }


def refused(call: Any, *args: Any) -> str:
    with pytest.raises(RegistrationError) as caught:
        call(*args)
    message = str(caught.value)
    assert KEY not in message
    assert KEY not in repr(caught.value)
    return message


def deploy(client: ControlPlaneClient, listener_id: str, namespace: str, name: str = "support") -> None:
    client.create_deployment(
        external_docker_deployment(
            name=name, image_uri=IMAGE, listener_id=listener_id, k8s_namespace=namespace
        )
    )


# --- create ---------------------------------------------------------------------------------------


def test_create_registers_the_listener_and_keeps_the_key_out_of_the_outputs(
    provider: ListenerRegistrationProvider, server: BackgroundServer, emulator: Emulator
) -> None:
    result = provider.create(props(server, namespaces=["agents", "batch"]))
    (stored,) = emulator.store.listeners.values()
    assert result.id == stored["id"]
    assert stored["compute_id"] == "eks-prod"
    assert stored["compute_config"] == {"k8s_namespaces": ["agents", "batch"]}
    assert result.outs is not None
    assert result.outs["listener_id"] == stored["id"]
    assert result.outs["adopted"] is False
    assert "api_key" not in result.outs
    assert KEY not in repr(result.outs)


def test_create_on_409_adopts_the_listener_that_watches_our_namespaces(
    provider: ListenerRegistrationProvider, server: BackgroundServer, client: ControlPlaneClient
) -> None:
    # A `pulumi up` interrupted after the POST: LangSmith has it, the stack's state does not.
    earlier = client.create_listener("eks-prod", ["batch", "agents"])
    result = provider.create(props(server, namespaces=["agents", "batch"]))
    assert result.id == str(earlier.id)
    assert result.outs is not None
    assert result.outs["adopted"] is True
    assert len(client.list_listeners()) == 1


def test_create_on_409_refuses_a_listener_that_is_not_ours(
    provider: ListenerRegistrationProvider, server: BackgroundServer, client: ControlPlaneClient
) -> None:
    other = client.create_listener("eks-prod", ["team-b"])
    message = refused(provider.create, props(server))
    assert "compute_id 'eks-prod'" in message
    assert "team-b" in message
    assert "topology.listeners[0].compute_id" in message
    assert f"topology.listeners[0].adopt_listener_id to {other.id}" in message
    assert client.get_listener(other.id).namespaces == ("team-b",)  # untouched


def test_create_on_409_refuses_a_listener_that_deployments_use(
    provider: ListenerRegistrationProvider, server: BackgroundServer, client: ControlPlaneClient
) -> None:
    # Same compute_id and namespace names, but with Agent Servers on it: another cluster's listener
    # (names like `eks-prod`/`agents` are easily shared). Adopting it silently would have two data
    # planes reconcile the same deployments; only an explicit adopt_listener_id may take it over.
    theirs = client.create_listener("eks-prod", ["agents"])
    deploy(client, str(theirs.id), "agents")
    message = refused(provider.create, props(server))
    assert "deployments on it (support)" in message
    assert f"topology.listeners[0].adopt_listener_id to {theirs.id}" in message
    taken = provider.create(props(server, adopt_listener_id=str(theirs.id)))
    assert taken.id == str(theirs.id)


def test_two_creates_racing_end_with_one_listener(
    provider: ListenerRegistrationProvider, server: BackgroundServer, emulator: Emulator
) -> None:
    # The first POST is held at the server while a second create completes: the first then meets the
    # second's listener (409) and must adopt it, not fail and not make a second one.
    emulator.faults.add(kind="latency", method="POST", path="/v2/listeners", times=1, delay=2.0)
    first: dict[str, Any] = {}
    arrived = threading.Event()

    def run_first() -> None:
        try:
            first["result"] = provider.create(props(server))
        except Exception as error:  # surfaced by the assertion below
            first["error"] = error

    thread = threading.Thread(target=run_first)
    thread.start()
    for _ in range(500):  # bounded: until the held POST is logged by the emulator
        if emulator.request_count("POST", "/v2/listeners") >= 1:
            arrived.set()
            break
        arrived.wait(0.01)
    assert arrived.is_set()
    second = provider.create(props(server))
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert "error" not in first, first.get("error")
    assert first["result"].id == second.id
    assert {first["result"].outs["adopted"], second.outs["adopted"]} == {True, False}
    assert len(emulator.store.listeners) == 1


def test_adopt_listener_id_takes_over_instead_of_creating(
    provider: ListenerRegistrationProvider, server: BackgroundServer, client: ControlPlaneClient
) -> None:
    made_in_ui = client.create_listener("eks-prod", ["old-ns"])
    result = provider.create(props(server, adopt_listener_id=str(made_in_ui.id)))
    assert result.id == str(made_in_ui.id)
    assert client.get_listener(made_in_ui.id).namespaces == ("agents",)  # ours now
    assert len(client.list_listeners()) == 1


def test_adopt_listener_id_must_exist_and_match_the_compute_id(
    provider: ListenerRegistrationProvider, server: BackgroundServer, client: ControlPlaneClient
) -> None:
    missing = "00000000-0000-4000-8000-000000000001"
    message = refused(provider.create, props(server, adopt_listener_id=missing))
    assert message.startswith("topology.listeners[0].adopt_listener_id: LangSmith has no listener")
    other = client.create_listener("another", ["agents"])
    message = refused(provider.create, props(server, adopt_listener_id=str(other.id)))
    assert "compute_id 'another'" in message
    assert "topology.listeners[0].compute_id" in message


def test_adopting_never_strands_a_deployment(
    provider: ListenerRegistrationProvider, server: BackgroundServer, client: ControlPlaneClient
) -> None:
    made_in_ui = client.create_listener("eks-prod", ["old-ns"])
    deploy(client, str(made_in_ui.id), "old-ns")
    message = refused(provider.create, props(server, adopt_listener_id=str(made_in_ui.id)))
    assert "support (in old-ns)" in message
    assert client.get_listener(made_in_ui.id).namespaces == ("old-ns",)


# --- 403 and 401 ----------------------------------------------------------------------------------


def test_listeners_not_enabled_is_a_plain_error_naming_the_keys(
    provider: ListenerRegistrationProvider, server: BackgroundServer, emulator: Emulator
) -> None:
    emulator.settings.listeners_allowed = False  # 403 "Listeners cannot be created … enterprise plans."
    message = refused(provider.create, props(server))
    assert "self-hosted enterprise plan" in message
    assert "api_key" in message
    assert "topology.workspaces[0].id" in message
    emulator.settings.listeners_allowed = True
    emulator.settings.deployments_enabled = False  # 403 "… not enabled for this organization."
    message = refused(provider.create, props(server))
    assert "not enabled" in message
    assert "api_key" in message


def test_workspace_required_is_a_plain_error_naming_the_workspace_key(
    provider: ListenerRegistrationProvider, server: BackgroundServer, emulator: Emulator
) -> None:
    # The real answer to an organization-scoped key (control-plane-api.md §2, langgraph-cli 0.4.40).
    emulator.faults.add(
        kind="error",
        status=403,
        method="POST",
        path="/v2/listeners",
        detail="This API key is organization scoped and requires workspace specification.",
    )
    message = refused(provider.create, props(server, api_key_source="workspace_api_keys.platform"))
    assert "organization-scoped" in message
    assert "topology.workspaces[0].id" in message
    assert "workspace_api_keys.platform" in message


def test_a_wrong_key_names_the_stack_key_not_the_value(
    provider: ListenerRegistrationProvider, server: BackgroundServer, emulator: Emulator
) -> None:
    message = refused(provider.create, props(server, api_key="lsv2_pt_wrong_key_99"))
    assert "rejected the API key in api_key (401)" in message
    assert "lsv2_pt_wrong_key_99" not in message


# --- read, diff, update -----------------------------------------------------------------------------


def test_read_reports_the_live_listener_and_404_as_gone(
    provider: ListenerRegistrationProvider, server: BackgroundServer, client: ControlPlaneClient
) -> None:
    created = provider.create(props(server))
    assert created.outs is not None
    client.patch_listener(created.id, namespaces=["agents", "drifted"])
    read = provider.read(created.id, created.outs)
    assert read.id == created.id
    assert read.outs is not None
    assert read.outs["namespaces"] == ["agents", "drifted"]
    client.delete_listener(created.id)
    assert provider.read(created.id, created.outs).id == ""


def test_read_and_delete_take_the_key_from_the_stack_config(
    server: BackgroundServer, emulator: Emulator
) -> None:
    unconfigured = ListenerRegistrationProvider(client_factory=_no_wait_client)
    outs = {**props(server), "listener_id": "00000000-0000-4000-8000-000000000002"}
    message = refused(unconfigured.read, outs["listener_id"], outs)
    assert "pulumi config set --secret api_key" in message
    per_workspace = ListenerRegistrationProvider(client_factory=_no_wait_client)
    per_workspace.configure(
        ConfigureRequest(
            Config(
                {"langsmith-dataplane:workspace_api_keys": f'{{"platform": "{KEY}"}}'}, "langsmith-dataplane"
            )
        )
    )
    gone = per_workspace.read(outs["listener_id"], {**outs, "api_key_source": "workspace_api_keys.platform"})
    assert gone.id == ""


def test_a_refresh_during_an_outage_fails_and_never_forgets_the_listener(
    provider: ListenerRegistrationProvider, server: BackgroundServer, emulator: Emulator
) -> None:
    # Only a 404 means gone (ReadResult with an empty id makes the engine drop the resource); a 5xx
    # after every retry must fail the refresh, or the next `up` would register a second listener.
    created = provider.create(props(server))
    assert created.outs is not None
    emulator.faults.add(kind="error", status=503, method="GET", path=f"/v2/listeners/{created.id}")
    message = refused(provider.read, created.id, created.outs)
    assert "HTTP 503" in message
    assert message.startswith("a LangSmith request for listener 'eks-prod' (topology.listeners[0]) failed")


def test_a_broken_key_map_in_the_stack_config_is_a_plain_error() -> None:
    # Refresh and destroy configure the provider from the stack config without running the program,
    # so nothing has validated `workspace_api_keys` first.
    broken = ListenerRegistrationProvider()
    broken.configure(
        ConfigureRequest(
            Config({"langsmith-dataplane:workspace_api_keys": '{"platform": "x"'}, "langsmith-dataplane")
        )
    )
    outs = {
        **props_without_server(),
        "listener_id": "00000000-0000-4000-8000-000000000002",
        "api_key_source": "workspace_api_keys.platform",
    }
    message = refused(broken.read, outs["listener_id"], outs)
    assert message.endswith(
        "set it with `pulumi config set --secret --path 'workspace_api_keys.platform' <key>`"
    )


def props_without_server() -> dict[str, Any]:
    return {
        "control_plane_url": "http://127.0.0.1:9",
        "workspace_id": "9d6f2a1e-3b4c-4d5e-8f60-7a8b9c0d1e2f",
        "compute_id": "eks-prod",
        "namespaces": ["agents"],
        "api_key_source": "api_key",
        "stack_key": "topology.listeners[0]",
        "workspace_key": "topology.workspaces[0].id",
        "adopt_listener_id": None,
    }


def test_diff_replaces_on_a_new_identity_and_patches_namespaces() -> None:
    olds = {
        "listener_id": "L",
        "compute_id": "a",
        "workspace_id": "w",
        "control_plane_url": "u",
        "namespaces": ["x", "y"],
        "api_key_source": "api_key",
        "stack_key": "s",
        "workspace_key": "k",
    }
    same = {**olds, "api_key": "rotated"}
    assert registration_diff(olds, same).changes is False
    reordered = registration_diff(olds, {**same, "namespaces": ["y", "x"]})
    assert reordered.changes is False
    more = registration_diff(olds, {**same, "namespaces": ["x", "y", "z"]})
    assert (more.changes, more.replaces) == (True, [])
    for key in ("compute_id", "workspace_id", "control_plane_url"):
        changed = registration_diff(olds, {**same, key: "other"})
        assert (changed.changes, changed.replaces) == (True, [key])
    assert registration_diff(olds, {**same, "adopt_listener_id": "L"}).replaces == []
    assert registration_diff(olds, {**same, "adopt_listener_id": "M"}).replaces == ["adopt_listener_id"]
    # A replacement deletes the old listener first: its refusal (deployments still on it) must come
    # before a new listener exists and the running listener is pointed at it.
    assert registration_diff(olds, {**same, "compute_id": "b"}).delete_before_replace is True


def test_a_replacement_is_refused_before_anything_changes(
    provider: ListenerRegistrationProvider, server: BackgroundServer, client: ControlPlaneClient
) -> None:
    # What Pulumi does with delete_before_replace: delete the old resource, then create the new one.
    # With a deployment on the old listener the delete fails, so no second listener is ever made and
    # the running listener keeps serving the old one's Agent Servers.
    old = provider.create(props(server))
    assert old.outs is not None
    deploy(client, old.id, "agents")
    new_inputs = props(server, compute_id="eks-prod-2")
    diff = registration_diff(old.outs, new_inputs)
    assert diff.replaces == ["compute_id"]
    assert diff.delete_before_replace
    message = refused(provider.delete, old.id, old.outs)
    assert "replaces the listener, which deletes this one first" in message
    assert [str(item.id) for item in client.list_listeners()] == [old.id]


def test_update_patches_the_namespaces(
    provider: ListenerRegistrationProvider, server: BackgroundServer, client: ControlPlaneClient
) -> None:
    created = provider.create(props(server))
    assert created.outs is not None
    updated = provider.update(created.id, created.outs, props(server, namespaces=["agents", "batch"]))
    assert updated.outs is not None
    assert updated.outs["namespaces"] == ["agents", "batch"]
    assert client.get_listener(created.id).namespaces == ("agents", "batch")


def test_update_refuses_to_drop_a_namespace_a_deployment_uses(
    provider: ListenerRegistrationProvider, server: BackgroundServer, client: ControlPlaneClient
) -> None:
    created = provider.create(props(server, namespaces=["agents", "batch"]))
    assert created.outs is not None
    deploy(client, created.id, "batch", name="nightly")
    message = refused(provider.update, created.id, created.outs, props(server, namespaces=["agents"]))
    assert "nightly (in batch)" in message
    assert "topology.listeners[0].namespaces" in message
    assert client.get_listener(created.id).namespaces == ("agents", "batch")


# --- delete ---------------------------------------------------------------------------------------


def test_delete_removes_the_listener_and_404_is_success(
    provider: ListenerRegistrationProvider, server: BackgroundServer, client: ControlPlaneClient
) -> None:
    created = provider.create(props(server))
    assert created.outs is not None
    provider.delete(created.id, created.outs)
    assert client.list_listeners() == []
    provider.delete(created.id, created.outs)  # already gone


def test_delete_is_refused_while_deployments_target_the_listener(
    provider: ListenerRegistrationProvider, server: BackgroundServer, client: ControlPlaneClient
) -> None:
    created = provider.create(props(server))
    assert created.outs is not None
    deploy(client, created.id, "agents")
    message = refused(provider.delete, created.id, created.outs)
    assert "still has 1 deployment(s) in LangSmith: support" in message
    assert [str(item.id) for item in client.list_listeners()] == [created.id]


def test_a_deployment_record_the_client_cannot_read_blocks_only_its_own_listeners_delete(
    provider: ListenerRegistrationProvider, server: BackgroundServer, client: ControlPlaneClient
) -> None:
    # One record anywhere in the workspace the client cannot validate (a sidecar without an image)
    # made every list unreadable, so no listener could be deleted. Now only a record that is (or may
    # be) on the listener keeps it; another listener's is not in the way.
    created = provider.create(props(server))
    assert created.outs is not None
    other = client.create_listener(compute_id="someone-else", namespaces=["theirs"])
    deploy(client, str(other.id), "theirs", name="theirs")
    theirs = client.list_deployments()[0].id
    broken = {"source_config": {"resource_spec": {"sidecars": [{"name": "proxy"}]}}}
    assert client.request("PATCH", f"/_emulator/deployments/{theirs}", json=broken).status_code == 200
    deploy(client, created.id, "agents")
    ours = next(d.id for d in client.read_deployments().deployments if d.name == "support")
    assert client.request("PATCH", f"/_emulator/deployments/{ours}", json=broken).status_code == 200
    message = refused(provider.delete, created.id, created.outs)
    assert f"still has 1 deployment(s) in LangSmith: {ours} (a record the client cannot read)" in message
    client.delete_deployment(ours)
    provider.delete(created.id, created.outs)
    assert [str(item.id) for item in client.list_listeners()] == [str(other.id)]


def test_delete_during_an_outage_keeps_the_listener(
    provider: ListenerRegistrationProvider,
    server: BackgroundServer,
    emulator: Emulator,
    client: ControlPlaneClient,
) -> None:
    created = provider.create(props(server))
    assert created.outs is not None
    # The deployment list fails on every attempt: never conclude "no deployments" from a failure.
    emulator.faults.add(kind="error", status=500, method="GET", path="/v2/deployments")
    message = refused(provider.delete, created.id, created.outs)
    assert "HTTP 500" in message
    emulator.faults.clear()
    assert len(client.list_listeners()) == 1


# --- the in-use guard ------------------------------------------------------------------------------


@pytest.fixture
def guard() -> ListenerInUseGuardProvider:
    g = ListenerInUseGuardProvider(client_factory=_no_wait_client)
    g.configure(ConfigureRequest(Config({"langsmith-dataplane:api_key": KEY}, "langsmith-dataplane")))
    return g


def guard_props(server: BackgroundServer, listener_id: str) -> dict[str, Any]:
    inputs = props(server, listener_id=listener_id)
    del inputs["api_key"], inputs["adopt_listener_id"]
    return inputs


def test_the_guard_refuses_its_delete_while_deployments_use_the_listener(
    guard: ListenerInUseGuardProvider,
    provider: ListenerRegistrationProvider,
    server: BackgroundServer,
    emulator: Emulator,
    client: ControlPlaneClient,
) -> None:
    listener = provider.create(props(server))
    before = len(emulator.requests)
    created = guard.create(guard_props(server, listener.id))
    # Create, read and update hold nothing in LangSmith and make no request; an outage cannot fail them.
    emulator.faults.add(kind="error", status=503, path="/v2/listeners")
    assert created.outs is not None
    assert guard.read(created.id, created.outs).outs == created.outs
    assert guard.diff(created.id, created.outs, guard_props(server, listener.id)).changes is False
    moved = guard.diff(created.id, created.outs, guard_props(server, "another-id"))
    assert (moved.changes, moved.replaces) == (True, [])
    assert len(emulator.requests) == before
    emulator.faults.clear()
    assert "api_key" not in created.outs
    assert KEY not in repr(created.outs)
    deploy(client, listener.id, "agents")
    message = refused(guard.delete, created.id, created.outs)
    assert "still has 1 deployment(s) in LangSmith: support" in message
    assert "kept running" in message
    # An outage is never read as "no deployments".
    client.delete_deployment(client.list_deployments()[0].id)
    emulator.faults.add(kind="error", status=500, method="GET", path="/v2/deployments")
    assert "HTTP 500" in refused(guard.delete, created.id, created.outs)
    emulator.faults.clear()
    guard.delete(created.id, created.outs)
    assert [str(item.id) for item in client.list_listeners()] == [listener.id]  # the guard deletes nothing


def test_the_provider_survives_pulumis_serialization_into_another_process() -> None:
    # Pulumi pickles the provider (dill) into the state and loads it in its own plugin process, which
    # runs in the project directory: the class must load there by reference, with no state captured.
    import base64
    import subprocess
    import sys

    from pulumi.dynamic.dynamic import serialize_provider

    from tools.harness import ROOT

    def load_elsewhere(provider: object, probe: str) -> str:
        blob = serialize_provider(provider)
        assert len(base64.b64decode(blob)) < 2000  # by reference, not by value
        return subprocess.run(
            [
                sys.executable,
                "-c",
                "import base64, sys, dill; p = dill.loads(base64.b64decode(sys.stdin.read())); "
                f"print(type(p).__module__, type(p).__name__, {probe})",
            ],
            input=blob,
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
            check=True,
        ).stdout

    loaded = load_elsewhere(
        ListenerRegistrationProvider(), "p.check({}, {'namespaces': []}).failures[0].reason"
    )
    assert loaded.split()[:2] == ["components.registration", "ListenerRegistrationProvider"]
    assert "at least one namespace is required" in loaded
    loaded = load_elsewhere(ListenerInUseGuardProvider(), "p.create({'listener_id': 'L'}).id")
    assert loaded.split() == ["components.registration", "ListenerInUseGuardProvider", "L"]
