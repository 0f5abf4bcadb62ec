"""Load a stack's configuration into a `StackConfig`, or fail with errors that name stack keys.

The raw config is the flat `{"langsmith-dataplane:<key>": <str or JSON string>}` map Pulumi gives
every program; which keys are secrets comes with it. Parsing is pure (`parse_stack_config`); only
`load_stack_config` reads Pulumi's runtime.
"""

from __future__ import annotations

import copy
import datetime
import json
import re
from collections.abc import Mapping, Sequence

import pulumi
from pydantic import ValidationError

from components.config import PROJECT, REQUIRED_TAG_KEYS, ExistingCluster, ExternalStores, StackConfig
from components.rules import Problem, stack_problems, stack_warnings

API_KEY = "api_key"
"""The LangSmith API key for every workspace without its own in `workspace_api_keys`."""
WORKSPACE_API_KEYS = "workspace_api_keys"
"""`{<workspace name>: <key>}`: one key per workspace (`pulumi config set --secret --path
'workspace_api_keys.<name>' <key>`)."""
KUBECONFIG = "kubeconfig"
"""`cluster.mode: existing` without `eks_cluster_name`: the kubeconfig to deploy with."""
POSTGRES_ADMIN_URI = "postgres_admin_uri"
REDIS_ADMIN_URI = "redis_admin_uri"
"""`stores.mode: external`: admin connection URIs of the shared stores."""

SECRET_KEYS = (API_KEY, WORKSPACE_API_KEYS, KUBECONFIG, POSTGRES_ADMIN_URI, REDIS_ADMIN_URI)
"""Secret stack keys. They never enter `StackConfig`: they stay Pulumi secret Outputs."""
_SECRET_KEYS = frozenset(SECRET_KEYS)
_FOREIGN_NAMESPACES = ("aws:", "kubernetes:", "pulumi:", "random:", "tls:")
# LangSmith API keys: personal tokens `lsv2_pt_…`, service keys `lsv2_sk_…`, legacy `ls__…`.
_LANGSMITH_KEY = re.compile(r"(lsv2_(pt|sk)_|ls__)[A-Za-z0-9_]*")
_REDACTED = "<redacted>"
# What a key-shaped value becomes before validation: plain enough to pass most field checks, so the
# only error reported about it is the leak itself.
_PLACEHOLDER = "redacted"
_MAX_SHOWN_VALUE = 80
# What a required key is replaced with when its own value is invalid, so the cross-key rules can
# still run over the rest of the stack (their findings about the replaced key are dropped).
_STAND_INS: Mapping[str, object] = {
    "name": "stand-in",
    "environment": "dev",
    "aws_region": "us-east-1",
    "aws_account_id": "000000000000",
    "tags": dict.fromkeys(REQUIRED_TAG_KEYS, "stand-in"),
    "listener_image": "stand-in.invalid/listener:stand-in",
}


class ConfigError(Exception):
    """A stack file that cannot be used. `str()` lists every problem, one per line."""

    def __init__(self, stack: str, problems: Sequence[Problem]):
        self.stack = stack
        self.problems = list(problems)
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"stack '{self.stack}' has {len(self.problems)} configuration error(s):"]
        lines += [f"  {_render(problem)}" for problem in self.problems]
        # Belt and braces: whatever produced a line, a key-shaped string never leaves it.
        return redact("\n".join(lines))


def redact(text: str) -> str:
    return _LANGSMITH_KEY.sub(_REDACTED, text)


def parse_stack_config(
    stack: str,
    raw: Mapping[str, str],
    secret_keys: set[str] | frozenset[str],
    *,
    require_secrets: bool = False,
) -> StackConfig:
    """Validate a stack's raw Pulumi config. Raises `ConfigError` listing every problem.

    Schema errors and cross-key rule errors come in one report: keys whose own value is invalid are
    set aside (defaulted, or replaced by a stand-in), the rules run over the rest, and rule findings
    about the set-aside keys are dropped (their schema error already names them).

    With `require_secrets`, the secrets the stack needs (see `required_secrets`) must be set too; the
    program asks for that, tests of other rules need not.
    """
    prefix = f"{PROJECT}:"
    problems: list[Problem] = []
    document: dict[str, object] = {}
    present: set[str] = set()

    for full_key, text in sorted(raw.items()):
        if full_key.startswith(_FOREIGN_NAMESPACES):
            continue
        if not full_key.startswith(prefix):
            problems.append(
                Problem(full_key, f"is outside the '{PROJECT}' namespace; did you mean '{prefix}…'?", None)
            )
            continue
        key = full_key.removeprefix(prefix)
        if key in _SECRET_KEYS:
            present.add(key)
            if full_key not in secret_keys:
                command = f"--path '{key}.<workspace>'" if key == WORKSPACE_API_KEYS else key
                problems.append(
                    Problem(
                        key,
                        f"is stored in plaintext; set it with `pulumi config set --secret {command}` "
                        "so only ciphertext is committed",
                    )
                )
            elif key == WORKSPACE_API_KEYS:
                problems += _workspace_key_shape(text)
            continue
        if full_key in secret_keys:
            # Only `api_key` stays a secret; every other value ends up in plaintext (resource names,
            # tags, the plan, stack outputs), so a secret here would be silently unwrapped. Refuse it,
            # and never validate (and so never echo) what it holds: every finding under this key is
            # dropped because the key is now reported.
            problems.append(
                Problem(
                    key,
                    "is stored as a secret, but its value is used in plaintext (resource names and tags, "
                    "the plan, stack outputs), which would reveal it; store it as plain config (only "
                    f"{API_KEY} is secret)",
                )
            )
            document[key] = _decode(text)
            continue
        value, leaks = _without_api_keys(key, _decode(text))
        problems += [
            Problem(path, "holds what looks like a LangSmith API key in plaintext; remove it")
            for path in leaks
        ]
        document[key] = value

    leaked = {p.key for p in problems}
    set_aside: set[str] = set(leaked)
    try:
        config: StackConfig | None = StackConfig.model_validate(document)
    except ValidationError as err:
        # A redacted key fails its own validation; the leak is already reported, without the value.
        problems += [p for p in map(_from_pydantic, err.errors()) if not _under(p.key, leaked)]
        config, removed = _validate_without(document)
        set_aside |= removed
    if config is not None:
        # A rule about a value that was set aside, or about something containing it, would judge a
        # default rather than what the file says: its schema error is the one to fix first.
        problems += [
            p
            for p in _tag_problems(config) + stack_problems(config)
            if not any(_related(k, set_aside) for k in (p.key, *p.context))
        ]
        problems += _secret_problems(
            config, present, raw.get(f"{prefix}{WORKSPACE_API_KEYS}"), require_secrets
        )
    if problems:
        raise ConfigError(stack, problems)
    assert config is not None
    return config


def workspace_key_names(text: object) -> set[str]:
    """The workspace names `workspace_api_keys` has keys for (values are never looked at here)."""
    value = _decode(text) if isinstance(text, str) else text
    return (
        {str(k) for k, v in value.items() if isinstance(v, str) and v.strip()}
        if isinstance(value, dict)
        else set()
    )


def required_secrets(
    config: StackConfig, workspace_keys: set[str] | frozenset[str] = frozenset()
) -> list[str]:
    """The secret stack keys this configuration cannot deploy without."""
    needed = []
    uncovered = {listener.workspace for listener in config.topology.listeners} - set(workspace_keys)
    if uncovered:
        needed.append(API_KEY)
    if isinstance(config.cluster, ExistingCluster) and config.cluster.eks_cluster_name is None:
        needed.append(KUBECONFIG)
    if isinstance(config.stores, ExternalStores):
        needed += [POSTGRES_ADMIN_URI, REDIS_ADMIN_URI]
    return needed


def _workspace_key_shape(text: str) -> list[Problem]:
    value = _decode(text)
    if not isinstance(value, dict) or not value:
        return [
            Problem(
                WORKSPACE_API_KEYS,
                "must map workspace names to keys: pulumi config set --secret --path "
                "'workspace_api_keys.<workspace>' <key>",
            )
        ]
    return [
        Problem(f"{WORKSPACE_API_KEYS}.{name}", "must be a non-empty API key")
        for name, key in value.items()
        if not isinstance(key, str) or not key.strip()
    ]


def _secret_problems(
    config: StackConfig, present: set[str], workspace_keys_text: str | None, required: bool
) -> list[Problem]:
    problems = []
    workspaces = {w.name for w in config.topology.workspaces}
    covered = workspace_key_names(workspace_keys_text) if workspace_keys_text else set()
    for name in sorted(covered - workspaces):
        problems.append(Problem(f"{WORKSPACE_API_KEYS}.{name}", "names no workspace in topology.workspaces"))
    if KUBECONFIG in present and (
        not isinstance(config.cluster, ExistingCluster) or config.cluster.eks_cluster_name is not None
    ):
        problems.append(
            Problem(
                KUBECONFIG,
                "is only used with cluster.mode 'existing' and no cluster.eks_cluster_name; remove it",
            )
        )
    if required:
        for key in required_secrets(config, covered):
            if key not in present:
                problems.append(Problem(key, _MISSING_SECRET[key]))
    return problems


_MISSING_SECRET = {
    API_KEY: "is required to register and run the listeners (a LangSmith API key of their workspace): "
    "pulumi config set --secret api_key <key>, or give every workspace one in workspace_api_keys",
    KUBECONFIG: "is required with cluster.mode 'existing' unless cluster.eks_cluster_name is set: "
    "pulumi config set --secret kubeconfig < ~/.kube/config",
    POSTGRES_ADMIN_URI: "is required with stores.mode 'external': "
    "pulumi config set --secret postgres_admin_uri 'postgres://…'",
    REDIS_ADMIN_URI: "is required with stores.mode 'external': pulumi config set --secret redis_admin_uri 'rediss://…'",
}


def config_warnings(config: StackConfig, today: datetime.date | None = None) -> list[str]:
    """The stack's warnings as text lines, in the same `key (got …): message` form as errors."""
    return [_render(p) for p in stack_warnings(config, today or datetime.date.today())]


def _validate_without(document: Mapping[str, object]) -> tuple[StackConfig | None, set[str]]:
    """The config with every invalid value set aside, so the cross-key rules can judge the rest.

    An invalid field is removed (its default takes its place); where that is not possible (a list
    item, a required field) its parent goes, up to a top-level key, which a stand-in replaces when it
    is required. Returns the config (None if nothing worked) and the keys set aside.
    """
    repaired = copy.deepcopy(dict(document))
    removed: set[str] = set()
    for _ in range(8):  # each round removes at least one path; nesting is shallower than this
        try:
            return StackConfig.model_validate(repaired), removed
        except ValidationError as err:
            locations = [tuple(_without_union_tags(list(e["loc"]))) for e in err.errors()]
        progress = False
        for loc in locations:
            path = loc
            while path:
                if _remove(repaired, path):
                    removed.add(_key_of(path))
                    progress = True
                    break
                path = path[:-1]
        if not progress:
            break
    return None, removed


def _remove(document: dict[str, object], path: tuple[object, ...]) -> bool:
    """Remove the dict entry at `path` (a stand-in for a required top-level key); False if impossible."""
    *parents, last = path
    node: object = document
    for part in parents:
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        ):
            node = node[part]
        else:
            return False
    if not isinstance(node, dict) or not isinstance(last, str):
        return False  # list items stay put: removing one would renumber its siblings
    if not parents and last in _STAND_INS:
        if node.get(last) == _STAND_INS[last]:
            return False
        node[last] = _STAND_INS[last]
        return True
    if last not in node:
        return False
    del node[last]
    return True


def _key_of(path: tuple[object, ...]) -> str:
    key = ""
    for part in path:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


def _related(key: str, paths: set[str]) -> bool:
    """`key` lies inside one of `paths`, or contains one."""
    return _under(key, paths) or any(_under(path, {key}) for path in paths)


def _under(key: str, paths: set[str]) -> bool:
    return any(key == p or key.startswith((p + ".", p + "[")) for p in paths)


def _without_api_keys(path: str, value: object) -> tuple[object, list[str]]:
    """The value with every key-shaped string (at any depth, in keys or values) replaced, and where they were."""
    if isinstance(value, str):
        return (_PLACEHOLDER, [path]) if _LANGSMITH_KEY.search(value) else (value, [])
    if isinstance(value, list):
        items = [_without_api_keys(f"{path}[{i}]", v) for i, v in enumerate(value)]
        return [v for v, _ in items], [p for _, ps in items for p in ps]
    if isinstance(value, dict):
        cleaned: dict[object, object] = {}
        found: list[str] = []
        for k, v in value.items():
            shown_key = _PLACEHOLDER if isinstance(k, str) and _LANGSMITH_KEY.search(k) else k
            if shown_key != k:
                found.append(f"{path}.{shown_key}")
            cleaned_value, inner = _without_api_keys(f"{path}.{shown_key}", v)
            cleaned[shown_key] = cleaned_value
            found += inner
        return cleaned, found
    return value, []


def load_stack_config() -> StackConfig:
    """Read the running stack's config from Pulumi's runtime (CLI or mocks)."""
    from pulumi.runtime import config as runtime_config

    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret = set(runtime_config.get_config_secret_keys_env()) | {
        k for k in raw if runtime_config.is_config_secret(k)
    }
    config = parse_stack_config(pulumi.get_stack(), raw, secret, require_secrets=True)
    for line in config_warnings(config):
        pulumi.log.warn(line)
    return config


def _decode(text: str) -> object:
    """Pulumi hands objects and lists over as JSON strings and scalars as plain strings."""
    if isinstance(text, str) and text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def _tag_problems(config: StackConfig) -> list[Problem]:
    return [
        Problem(f"tags.{key}", "is a required tag on every AWS resource; add it to the stack's tags")
        for key in REQUIRED_TAG_KEYS
        if not config.tags.get(key)
    ]


def _from_pydantic(error: Mapping[str, object]) -> Problem:
    key = _key_of(tuple(_without_union_tags(list(error["loc"]))))  # type: ignore[call-overload]
    message = str(error["msg"])
    if error["type"] == "extra_forbidden":
        message = "is not a known key (check its spelling against the README's config reference)"
    elif error["type"] == "missing":
        message = "is required"
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    value = None if error["type"] == "missing" else error.get("input")
    return Problem(key or "(root)", message, value)


# pydantic puts the chosen member's tag into `loc` right after a discriminated union's field.
_UNION_TAGS = {
    "network": {"create", "existing"},
    "stores": {"managed", "in-cluster", "external"},
    "cluster": {"eks", "existing"},
}
_LIST_UNION_TAGS = {"extra_destinations": {"domain", "cidr"}}


def _without_union_tags(loc: list[object]) -> list[object]:
    kept: list[object] = []
    for k, part in enumerate(loc):
        previous = loc[k - 1] if k >= 1 else None
        list_field = loc[k - 2] if k >= 2 and isinstance(previous, int) else None
        if part in _UNION_TAGS.get(str(previous), ()) or part in _LIST_UNION_TAGS.get(str(list_field), ()):
            continue
        kept.append(part)
    return kept


def _render(problem: Problem) -> str:
    shown = "" if problem.value is None else f" (got {_show(problem.value)})"
    key = problem.key if ":" in problem.key else f"{PROJECT}:{problem.key}"
    return redact(f"{key}{shown}: {problem.message}")


def _show(value: object) -> str:
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= _MAX_SHOWN_VALUE else text[: _MAX_SHOWN_VALUE - 1] + "…"
