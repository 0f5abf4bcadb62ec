"""Register each listener in LangSmith (`/v2/listeners`) as a Pulumi dynamic resource.

The provider reuses the listener package's control-plane client (`listener.controlplane`), so the
program and the listener speak to LangSmith through the same headers, retries, pagination and
typed errors. Its lifecycle:

* create: `POST /v2/listeners`; on 409 the listener with the same `compute_id` is adopted, but only
  when it is ours to adopt (it watches exactly our namespaces); with `adopt_listener_id`, that
  listener is taken over instead of creating one.
* read (refresh): `GET /v2/listeners/{id}`; 404 means it is gone.
* diff: a new `compute_id`, workspace or control plane replaces it, deleting the old listener
  first (so a replacement is refused, before anything changes, while deployments use it); new
  namespaces are a `PATCH`.
* update: `PATCH compute_config.k8s_namespaces`, refused while a deployment targets a namespace
  that would be removed.
* delete: refused while any LangSmith deployment still targets the listener; 404 is success.

`ListenerInUseGuard` makes the same refusal happen first on a destroy (or when a listener leaves
the topology): it depends on the listener's Deployment, the agent namespaces and the add-ons, so
Pulumi deletes it before any of them, and its delete fails while LangSmith deployments still target
the listener, leaving the listener running and the Agent Servers managed.

The API key is a secret *input*: create and update use it, and it is never returned as an output,
logged or put in an error. Read and delete receive only the stored outputs from the engine, so
they take the key from the stack's configuration (`api_key`, or `workspace_api_keys.<workspace>`)
through `configure`, which also means a rotated key works for them at once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    ConfigureRequest,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

from listener.controlplane import (
    AuthenticationError,
    ConflictError,
    ControlPlaneClient,
    ControlPlaneConfig,
    ControlPlaneError,
    DeploymentNotEnabledError,
    ListenersNotAllowedError,
    NotFoundError,
    PermissionDeniedError,
    TransportError,
    WorkspaceRequiredError,
)
from listener.controlplane.models import Listener

log = logging.getLogger(__name__)

PROJECT = "langsmith-dataplane"
API_KEY = "api_key"
WORKSPACE_API_KEYS = "workspace_api_keys"

# Inputs that, when changed, make a different listener: LangSmith cannot move a listener between
# workspaces or control planes, and `compute_id` is not patchable (control-plane-api.md §11.4).
REPLACE_ON = ("compute_id", "workspace_id", "control_plane_url")

ClientFactory = Callable[[ControlPlaneConfig], ControlPlaneClient]


class RegistrationError(Exception):
    """A registration step LangSmith refused or that would be unsafe; the message says what to fix."""


@dataclass(frozen=True)
class Registration:
    """The non-secret description of one listener registration (the dynamic resource's properties)."""

    control_plane_url: str
    workspace_id: str
    compute_id: str
    namespaces: tuple[str, ...]
    api_key_source: str
    """The stack key holding the API key: `api_key` or `workspace_api_keys.<workspace>`."""
    stack_key: str
    """The listener's stack key, e.g. `topology.listeners[0]`, for messages."""
    workspace_key: str
    """The workspace's stack key, e.g. `topology.workspaces[1].id`."""
    adopt_listener_id: str | None = None

    @classmethod
    def of(cls, props: Mapping[str, Any]) -> Registration:
        adopt = props.get("adopt_listener_id")
        return cls(
            control_plane_url=str(props["control_plane_url"]),
            workspace_id=str(props["workspace_id"]),
            compute_id=str(props["compute_id"]),
            namespaces=tuple(str(n) for n in props["namespaces"]),
            api_key_source=str(props["api_key_source"]),
            stack_key=str(props["stack_key"]),
            workspace_key=str(props["workspace_key"]),
            adopt_listener_id=str(adopt) if adopt else None,
        )

    def outputs(self, listener: Listener, *, adopted: bool) -> dict[str, Any]:
        """What the engine stores: everything but the API key."""
        return {
            "listener_id": str(listener.id),
            "control_plane_url": self.control_plane_url,
            "workspace_id": self.workspace_id,
            "compute_id": listener.compute_id,
            "namespaces": list(listener.namespaces),
            "api_key_source": self.api_key_source,
            "stack_key": self.stack_key,
            "workspace_key": self.workspace_key,
            "adopt_listener_id": self.adopt_listener_id,
            "adopted": adopted,
        }

    def describe(self) -> str:
        return f"listener '{self.compute_id}' ({self.stack_key})"


# --- Pure decisions ------------------------------------------------------------------------------


def registration_diff(olds: Mapping[str, Any], news: Mapping[str, Any]) -> DiffResult:
    """Replace on a new identity, update on new namespaces, otherwise nothing (the key is not a change:
    rotating it must never touch the listener)."""
    replaces = [key for key in REPLACE_ON if str(olds.get(key)) != str(news.get(key))]
    adopt = news.get("adopt_listener_id")
    if adopt and str(adopt) != str(olds.get("listener_id")):
        replaces.append("adopt_listener_id")
    changes = list(replaces)
    if sorted(olds.get("namespaces") or []) != sorted(news.get("namespaces") or []):
        changes.append("namespaces")
    for key in ("api_key_source", "stack_key", "workspace_key"):
        if olds.get(key) != news.get(key):
            changes.append(key)
    return DiffResult(
        changes=bool(changes),
        replaces=replaces,
        stables=[] if replaces else ["listener_id"],
        # Delete first: the old listener's delete refuses while LangSmith deployments target it, and
        # that refusal must come before the new listener exists and the running listener is pointed
        # at it (create-before-delete would leave those deployments with no listener at all, and a
        # new registration that adopts the old listener on 409 would then see it deleted).
        delete_before_replace=True,
    )


def ours_to_adopt(
    listener: Listener, namespaces: Sequence[str], deployments: Mapping[str, str | None]
) -> bool:
    """A listener with our compute_id is ours to adopt only if it watches exactly our namespaces and no
    LangSmith deployment uses it: then it is indistinguishable from the one we would create (say, after
    a `pulumi up` interrupted between the POST and saving state). One watching other namespaces belongs
    to someone else's layout; one with deployments is in use by some data plane (compute_id and
    namespace names like `prod`/`agents` are easily shared between clusters), and adopting it silently
    would have two listeners reconcile the same Agent Servers."""
    return set(listener.namespaces) == set(namespaces) and not deployments


def stranded_namespaces(deployments: Mapping[str, str | None], namespaces: Sequence[str]) -> dict[str, str]:
    """Deployments (name -> target namespace) that would lose their namespace. A deployment with no
    recorded namespace is counted as stranded: we cannot tell where it runs."""
    keep = set(namespaces)
    return {name: ns or "?" for name, ns in deployments.items() if ns not in keep}


# --- The provider --------------------------------------------------------------------------------


class _LangSmithProvider(ResourceProvider):
    """What both providers share: the stack's API keys (from `configure`) and a control-plane client.
    Stateless apart from that config."""

    def __init__(self, client_factory: ClientFactory | None = None) -> None:
        super().__init__()
        self._client_factory = client_factory
        self._config: dict[str, Any] = {}

    def configure(self, req: ConfigureRequest) -> None:
        # Only the two key settings are kept; nothing else of the stack's config is needed here.
        self._config = {key: req.config.get(f"{PROJECT}:{key}") for key in (API_KEY, WORKSPACE_API_KEYS)}

    def _configured_key(self, reg: Registration) -> str | None:
        if reg.api_key_source == API_KEY:
            return self._config.get(API_KEY)
        workspace = reg.api_key_source.removeprefix(f"{WORKSPACE_API_KEYS}.")
        raw = self._config.get(WORKSPACE_API_KEYS)
        try:
            keys = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError:
            # Refresh and destroy do not run the program, so nothing validated the config first; a
            # broken value means "no key", which `_client` reports with the command that sets it.
            return None
        return (keys or {}).get(workspace) if isinstance(keys, dict) else None

    @contextmanager
    def _client(self, reg: Registration, api_key: str | None) -> Iterator[ControlPlaneClient]:
        if not api_key:
            raise RegistrationError(
                f"no API key for {reg.describe()}: set it with "
                f"`pulumi config set --secret {_config_key_command(reg.api_key_source)} <key>`"
            )
        config = ControlPlaneConfig(
            base_url=reg.control_plane_url, api_key=api_key, tenant_id=reg.workspace_id
        )
        client = (self._client_factory or ControlPlaneClient)(config)
        try:
            yield client
        finally:
            client.close()


class ListenerRegistrationProvider(_LangSmithProvider):
    """CRUD of one LangSmith listener."""

    # Check: reject inputs that can never work before any request is made.
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        namespaces = news.get("namespaces")
        if not isinstance(namespaces, list) or not namespaces:
            failures.append(CheckFailure("namespaces", "at least one namespace is required"))
        if not news.get("compute_id"):
            failures.append(CheckFailure("compute_id", "is required"))
        if not news.get("api_key"):
            failures.append(CheckFailure("api_key", f"is required: set {news.get('api_key_source')}"))
        return CheckResult(news, failures)

    def create(self, props: dict[str, Any]) -> CreateResult:
        reg = Registration.of(props)
        with self._client(reg, props.get("api_key")) as client, _plain_errors(reg):
            if reg.adopt_listener_id:
                listener = self._take_over(client, reg)
                return CreateResult(str(listener.id), reg.outputs(listener, adopted=True))
            try:
                listener = client.create_listener(reg.compute_id, list(reg.namespaces))
                log.info("registered %s as %s", reg.describe(), listener.id)
                return CreateResult(str(listener.id), reg.outputs(listener, adopted=False))
            except ConflictError:
                listener = self._adopt_existing(client, reg)
                return CreateResult(str(listener.id), reg.outputs(listener, adopted=True))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        reg = Registration.of(props)
        with self._client(reg, self._configured_key(reg)) as client, _plain_errors(reg):
            try:
                listener = client.get_listener(id_)
            except NotFoundError:
                # Gone from LangSmith: an empty id tells the engine the resource no longer exists.
                return ReadResult("", {})
        outputs = reg.outputs(listener, adopted=bool(props.get("adopted")))
        return ReadResult(id_, outputs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return registration_diff(olds, news)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        reg = Registration.of(news)
        with self._client(reg, news.get("api_key")) as client, _plain_errors(reg):
            listener = client.get_listener(id_)
            if set(listener.namespaces) != set(reg.namespaces):
                self._refuse_stranding(client, reg, id_)
                listener = client.patch_listener(id_, namespaces=list(reg.namespaces))
                log.info("%s now watches %s", reg.describe(), ", ".join(reg.namespaces))
        return UpdateResult(reg.outputs(listener, adopted=bool(olds.get("adopted"))))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        reg = Registration.of(props)
        with self._client(reg, self._configured_key(reg)) as client, _plain_errors(reg):
            _refuse_while_deployed(client, reg, id_)
            try:
                client.delete_listener(id_)
            except NotFoundError:
                return  # already gone is what we wanted

    # --- steps ---

    def _adopt_existing(self, client: ControlPlaneClient, reg: Registration) -> Listener:
        existing = [item for item in client.list_listeners() if item.compute_id == reg.compute_id]
        if not existing:
            # The 409's listener vanished between the POST and the list: another actor is busy with it.
            raise RegistrationError(
                f"LangSmith answered 409 for {reg.describe()} but lists no listener with that compute_id; "
                "another process is changing it. Run `pulumi up` again."
            )
        listener = existing[0]
        deployments = _deployments_of(client, str(listener.id))
        if set(listener.namespaces) == set(reg.namespaces) and deployments:
            names = ", ".join(sorted(deployments))
            raise RegistrationError(
                f"workspace {reg.workspace_id} already has a listener with compute_id '{reg.compute_id}' "
                f"({listener.id}) and LangSmith deployments on it ({names}): another data plane may run "
                f"it. Choose another {reg.stack_key}.compute_id, or, if it is this cluster's, set "
                f"{reg.stack_key}.adopt_listener_id to {listener.id} to take it over."
            )
        if not ours_to_adopt(listener, reg.namespaces, deployments):
            raise RegistrationError(
                f"workspace {reg.workspace_id} already has a listener with compute_id '{reg.compute_id}' "
                f"({listener.id}) watching {', '.join(listener.namespaces) or 'no namespaces'}, not "
                f"{', '.join(reg.namespaces)}: it is not this stack's. Choose another "
                f"{reg.stack_key}.compute_id, or set {reg.stack_key}.adopt_listener_id to {listener.id} "
                "to take it over."
            )
        log.info("adopted %s: LangSmith already had it as %s", reg.describe(), listener.id)
        return listener

    def _take_over(self, client: ControlPlaneClient, reg: Registration) -> Listener:
        assert reg.adopt_listener_id is not None
        try:
            listener = client.get_listener(reg.adopt_listener_id)
        except NotFoundError:
            raise RegistrationError(
                f"{reg.stack_key}.adopt_listener_id: LangSmith has no listener {reg.adopt_listener_id} in "
                f"workspace {reg.workspace_id}"
            ) from None
        if listener.compute_id != reg.compute_id:
            raise RegistrationError(
                f"{reg.stack_key}.adopt_listener_id: listener {listener.id} has compute_id "
                f"'{listener.compute_id}', but {reg.stack_key}.compute_id is '{reg.compute_id}'; "
                "make them equal (a listener's compute_id cannot be changed)"
            )
        if set(listener.namespaces) != set(reg.namespaces):
            self._refuse_stranding(client, reg, str(listener.id))
            listener = client.patch_listener(listener.id, namespaces=list(reg.namespaces))
        log.info("took over %s (%s)", reg.describe(), listener.id)
        return listener

    def _refuse_stranding(self, client: ControlPlaneClient, reg: Registration, listener_id: str) -> None:
        stranded = stranded_namespaces(_deployments_of(client, listener_id), reg.namespaces)
        if stranded:
            listed = ", ".join(f"{name} (in {ns})" for name, ns in sorted(stranded.items()))
            raise RegistrationError(
                f"{reg.stack_key}.namespaces would drop namespaces that LangSmith deployments still use: "
                f"{listed}. Delete or move those deployments first."
            )


class ListenerInUseGuardProvider(_LangSmithProvider):
    """Holds nothing in LangSmith: create, read and update make no request. Its delete refuses while
    LangSmith deployments target the listener, and since the guard depends on everything a running
    Agent Server needs, Pulumi deletes it (and so asks) before any of that goes."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return CheckResult(news, [])

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(str(props["listener_id"]), _guard_outputs(props))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        # Nothing to refresh, and a control-plane outage must not fail a `pulumi refresh` here.
        return ReadResult(id_, _guard_outputs(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = any(str(olds.get(k)) != str(news.get(k)) for k in _GUARD_KEYS)
        return DiffResult(changes=changed, replaces=[], delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(_guard_outputs(news))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        reg = Registration.of(props)
        listener_id = str(props.get("listener_id") or id_)
        with self._client(reg, self._configured_key(reg)) as client, _plain_errors(reg):
            _refuse_while_deployed(client, reg, listener_id)


_GUARD_KEYS = (
    "listener_id",
    "control_plane_url",
    "workspace_id",
    "compute_id",
    "namespaces",
    "api_key_source",
    "stack_key",
    "workspace_key",
)


def _guard_outputs(props: Mapping[str, Any]) -> dict[str, Any]:
    return {key: props.get(key) for key in _GUARD_KEYS}


def _config_key_command(source: str) -> str:
    if source.startswith(f"{WORKSPACE_API_KEYS}."):
        return f"--path '{source}'"
    return source


def _refuse_while_deployed(client: ControlPlaneClient, reg: Registration, listener_id: str) -> None:
    remaining = _deployments_of(client, listener_id)
    if remaining:
        names = ", ".join(sorted(remaining))
        raise RegistrationError(
            f"{reg.describe()} ({listener_id}) still has {len(remaining)} deployment(s) in LangSmith: "
            f"{names}. Delete them in LangSmith (Deployments) first, then run this again; the listener "
            "is kept running until then so those Agent Servers stay managed. (A new compute_id, "
            "workspace or control plane replaces the listener, which deletes this one first.)"
        )


def _deployments_of(client: ControlPlaneClient, listener_id: str) -> dict[str, str | None]:
    """name -> namespace of every LangSmith deployment placed on the listener (the API has no filter)."""
    found: dict[str, str | None] = {}
    listing = client.read_deployments()
    for deployment in listing.deployments:
        source = deployment.source_config
        if source is None or str(source.listener_id) != str(listener_id):
            continue
        placement = source.listener_config
        found[deployment.name] = placement.k8s_namespace if placement is not None else None
    for unreadable in listing.unreadable:
        # A record the client cannot validate still counts when it may be on this listener: deleting
        # the listener under it would orphan its Agent Server. Another listener's is not in the way.
        if not unreadable.listener_known or str(unreadable.listener_id) == str(listener_id):
            found[f"{unreadable.id} (a record the client cannot read)"] = None
    return found


@contextmanager
def _plain_errors(reg: Registration) -> Iterator[None]:
    """Turn the client's typed errors into messages that name the stack key a user must change."""
    key = reg.api_key_source
    try:
        yield
    except RegistrationError:
        raise
    except NotFoundError:
        raise RegistrationError(
            f"LangSmith no longer has {reg.describe()} in workspace {reg.workspace_id} (404). Run "
            "`pulumi refresh` so the stack forgets it, then `pulumi up` registers it again."
        ) from None
    except AuthenticationError:
        raise RegistrationError(
            f"LangSmith at {reg.control_plane_url} rejected the API key in {key} (401) while registering "
            f"{reg.describe()}. Set a valid key: pulumi config set --secret {_config_key_command(key)} <key>"
        ) from None
    except WorkspaceRequiredError:
        raise RegistrationError(
            f"the API key in {key} is organization-scoped and LangSmith needs a workspace for "
            f"{reg.describe()} (403 'requires workspace specification'). Check {reg.workspace_key} "
            f"({reg.workspace_id}): it must be a workspace of that organization."
        ) from None
    except (DeploymentNotEnabledError, ListenersNotAllowedError) as error:
        raise RegistrationError(
            f"LangSmith refused to register {reg.describe()} in workspace {reg.workspace_id} (403): "
            "listeners are only enabled for organizations with a self-hosted enterprise plan that "
            f"LangChain has enabled. Check that the key in {key} belongs to that organization and "
            f"{reg.workspace_key} to one of its workspaces, or ask LangChain to enable it. "
            f"LangSmith said: {_detail(error)}"
        ) from None
    except PermissionDeniedError as error:
        raise RegistrationError(
            f"LangSmith denied {reg.describe()} (403). Check {key} and {reg.workspace_key}. "
            f"LangSmith said: {_detail(error)}"
        ) from None
    except TransportError as error:
        raise RegistrationError(
            f"could not reach LangSmith at {reg.control_plane_url} for {reg.describe()}: {error.message} "
            "(the machine running `pulumi up` needs HTTPS access to the control plane)"
        ) from None
    except ControlPlaneError as error:
        raise RegistrationError(f"a LangSmith request for {reg.describe()} failed: {error.message}") from None


def _detail(error: ControlPlaneError) -> str:
    return error.detail if isinstance(error.detail, str) else error.message


# --- The resource --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListenerRegistrationArgs:
    control_plane_url: str
    workspace_id: str
    compute_id: str
    namespaces: Sequence[str]
    api_key: pulumi.Input[str]
    """A Pulumi secret; stays an input, never an output."""
    api_key_source: str
    stack_key: str
    workspace_key: str
    adopt_listener_id: str | None = None


class ListenerInUseGuard(pulumi.dynamic.Resource, module="langsmith", name="ListenerInUseGuard"):
    """Refuses to be deleted while LangSmith deployments target the listener. Give it
    `depends_on` everything the listener's Agent Servers need (the listener's objects, the agent
    namespaces and their policies, the add-ons): Pulumi deletes dependents first, so a destroy stops
    here with all of them intact. It holds no secret: its deletes read the key from the stack config."""

    def __init__(
        self,
        name: str,
        args: ListenerRegistrationArgs,
        listener_id: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "listener_id": listener_id,
            "control_plane_url": args.control_plane_url,
            "workspace_id": args.workspace_id,
            "compute_id": args.compute_id,
            "namespaces": list(args.namespaces),
            "api_key_source": args.api_key_source,
            "stack_key": args.stack_key,
            "workspace_key": args.workspace_key,
        }
        super().__init__(ListenerInUseGuardProvider(), name, props, opts)


class ListenerRegistration(pulumi.dynamic.Resource, module="langsmith", name="ListenerRegistration"):
    """One listener in LangSmith; `listener_id` feeds the listener's settings."""

    listener_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: ListenerRegistrationArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        props: dict[str, Any] = {
            "listener_id": None,
            "adopted": None,
            "control_plane_url": args.control_plane_url,
            "workspace_id": args.workspace_id,
            "compute_id": args.compute_id,
            "namespaces": list(args.namespaces),
            "api_key": pulumi.Output.secret(args.api_key),
            "api_key_source": args.api_key_source,
            "stack_key": args.stack_key,
            "workspace_key": args.workspace_key,
            "adopt_listener_id": args.adopt_listener_id,
        }
        super().__init__(ListenerRegistrationProvider(), name, props, opts)
