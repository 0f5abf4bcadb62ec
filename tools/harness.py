"""Run the real `__main__.py` for one stack under Pulumi's mocks and record what it would register.

This is the engine of the offline plan (`python -m tools.plan`) and of the program tests. It needs
no Pulumi CLI, no provider plugins and no cloud credentials. What it cannot know (provider
defaults, diffs against deployed state, replacements) is listed in the README's plan section.
"""

from __future__ import annotations

import json
import logging
import runpy
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs
from pulumi.runtime.sync_await import _sync_await

from components.config import PROJECT
from tools import fake_cloud

ROOT = Path(__file__).resolve().parent.parent
STACKS_DIR = ROOT / "stacks"
SECRET = "<secret>"
UNKNOWN = "<unknown>"
_SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's wire marker for secret values
_SECRET_SIG_VALUE = "1b47061264138c4ac30d75fd1eb44270"


class StackFileError(Exception):
    """A stack file that is not valid YAML or not shaped like a Pulumi stack file."""


@dataclass(frozen=True)
class StackFile:
    config: dict[str, str]
    """Flat `namespace:key -> str` as Pulumi hands config to a program; secrets stubbed."""
    secret_keys: frozenset[str]


@dataclass(frozen=True)
class Registration:
    urn: str
    type: str
    name: str
    parent: str
    provider: str
    custom: bool
    remote: bool
    dependencies: tuple[str, ...]
    inputs: Mapping[str, Any]
    """The wire form the engine and CrossGuard see: camelCase keys, secrets and unknowns as sent."""
    protect: bool = False
    retain_on_delete: bool = False
    ignore_changes: tuple[str, ...] = ()


@dataclass
class PlanResult:
    stack: str
    preview: bool
    resources: list[Registration] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    stubbed_secrets: list[str] = field(default_factory=list)
    """Secret keys the stack needs but its file does not hold, planned as `<secret>`."""
    warnings: list[str] = field(default_factory=list)
    """What the program logged with `pulumi.log.warn` (a real run prints these as warnings too)."""


def stack_names() -> list[str]:
    return sorted(
        p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in STACKS_DIR.glob("Pulumi.*.yaml")
    )


def stack_path(stack: str) -> Path:
    return STACKS_DIR / f"Pulumi.{stack}.yaml"


def read_stack_file(path: Path) -> StackFile:
    """Read a stack file the way the CLI would hand it to the program: `secure:` values stubbed."""
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise StackFileError(f"{path.name} is not valid YAML: {_yaml_problem(error)}") from None
    if not isinstance(document, dict) or not isinstance(document.get("config", {}), dict):
        raise StackFileError(f"{path.name}: expected a mapping with a 'config' mapping")
    config: dict[str, str] = {}
    secret_keys: set[str] = set()
    for key, value in (document.get("config") or {}).items():
        stubbed, had_secret = _stub_secrets(value)
        if had_secret:
            secret_keys.add(key)
        config[key] = _as_config_string(stubbed)
    return StackFile(config, frozenset(secret_keys))


def _yaml_problem(error: yaml.YAMLError) -> str:
    """What is wrong and where, without PyYAML's snippet of the line: that line may hold a secret."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        context = f"{error.context}, " if error.context else ""
        mark = error.problem_mark
        return f"{context}{error.problem} (line {mark.line + 1}, column {mark.column + 1})"
    return type(error).__name__


def _stub_secrets(value: Any) -> tuple[Any, bool]:
    if isinstance(value, dict) and set(value) == {"secure"}:
        return SECRET, True
    if isinstance(value, dict):
        items = {k: _stub_secrets(v) for k, v in value.items()}
        return {k: v for k, (v, _) in items.items()}, any(s for _, s in items.values())
    if isinstance(value, list):
        items_l = [_stub_secrets(v) for v in value]
        return [v for v, _ in items_l], any(s for _, s in items_l)
    return value, False


def _as_config_string(value: Any) -> str:
    """Pulumi passes scalars as plain strings and objects or lists as JSON text."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


class _Mocks(pulumi.runtime.Mocks):
    def __init__(self, preview: bool, region: str):
        self.preview = preview
        self.region = region

    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict]:
        if self.preview:
            # No id: every output the program did not set itself is unknown, as in a first preview.
            return None, dict(args.inputs)
        return f"{args.name}-id", {
            **args.inputs,
            **fake_cloud.outputs(args.typ, args.name, args.inputs, self.region),
        }

    def call(self, args: MockCallArgs) -> tuple[dict, list | None]:
        return fake_cloud.invoke(args.token, dict(args.args), self.region), []


class _GraphMonitor(MockMonitor):
    """Also records parent, provider and dependencies, which `MockResourceArgs` lacks (pulumi#14421)."""

    def __init__(self, mocks: _Mocks):
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            from pulumi.runtime import rpc

            self.registrations.append(
                Registration(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent=request.parent,
                    provider=request.provider,
                    custom=bool(request.custom),
                    remote=bool(request.remote),
                    dependencies=tuple(sorted(request.dependencies)),
                    inputs=rpc.deserialize_properties(request.object, keep_unknowns=True),
                    protect=bool(request.protect),
                    retain_on_delete=bool(request.retainOnDelete),
                    ignore_changes=tuple(request.ignoreChanges),
                )
            )
        return response


def stub_missing_secrets(stack: str, stack_file: StackFile) -> tuple[StackFile, list[str]]:
    """The stack file with every secret the configuration needs but the file lacks set to `<secret>`.

    A shipped example stack cannot hold ciphertext for your secrets provider, and a real user's file
    holds it (`pulumi config set --secret`), so the plan shows what the program declares with them.
    A file that does not validate is returned as is: the program run reports its errors."""
    from components.load import (
        WORKSPACE_API_KEYS,
        ConfigError,
        parse_stack_config,
        required_secrets,
        workspace_key_names,
    )

    try:
        config = parse_stack_config(stack, stack_file.config, stack_file.secret_keys)
    except ConfigError:
        return stack_file, []
    covered = workspace_key_names(stack_file.config.get(f"{PROJECT}:{WORKSPACE_API_KEYS}", ""))
    missing = [
        key for key in required_secrets(config, covered) if f"{PROJECT}:{key}" not in stack_file.config
    ]
    stubs = {f"{PROJECT}:{key}": SECRET for key in missing}
    return StackFile({**stack_file.config, **stubs}, stack_file.secret_keys | set(stubs)), missing


def run_stack(
    stack: str, *, preview: bool = True, config_path: Path | None = None, stub_secrets: bool = True
) -> PlanResult:
    """Run the program for `stack` under mocks. Raises `pulumi.RunError` for config errors.

    `stub_secrets` plans secrets the file lacks as `<secret>` (see `stub_missing_secrets`)."""
    stack_file = read_stack_file(config_path or stack_path(stack))
    stubbed: list[str] = []
    if stub_secrets:
        stack_file, stubbed = stub_missing_secrets(stack, stack_file)

    def program() -> None:
        with _program_on_path():
            runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")

    result = run_program(
        program, stack=stack, preview=preview, config=stack_file.config, secret_keys=stack_file.secret_keys
    )
    result.stubbed_secrets = stubbed
    return result


def run_program(
    program: Callable[[], object],
    *,
    stack: str = "test",
    preview: bool = True,
    config: Mapping[str, str] | None = None,
    secret_keys: Iterable[str] = (),
) -> PlanResult:
    """Run any function that registers resources (a component test, say) under the recording mocks."""
    config = dict(config or {})
    mocks = _Mocks(preview, config.get(f"{PROJECT}:aws_region", "us-east-1"))
    monitor = _GraphMonitor(mocks)
    logs = _Capture()
    # set_mocks keeps an existing root Stack resource, so without this every run after the first
    # would parent its resources (and collect its outputs) on the first run's stack.
    pulumi.runtime.settings.ROOT.set(None)
    pulumi.runtime.set_mocks(
        mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor, logger=logs.logger
    )
    pulumi.runtime.set_all_config(config, sorted(secret_keys))
    pulumi.runtime.test(lambda: program() and None)()
    root = pulumi.runtime.get_root_resource()
    return PlanResult(
        stack=stack,
        preview=preview,
        resources=sorted(monitor.registrations, key=lambda r: r.urn),
        outputs={name: _sync_await(_resolve(value)) for name, value in sorted(root.outputs.items())},
        warnings=logs.warnings,
    )


class _Capture(logging.Handler):
    """Collects the warnings the program logs through the mock engine (pulumi.log.warn)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.warnings: list[str] = []
        self.logger = logging.getLogger(f"{__name__}.run{id(self)}")
        self.logger.propagate = False
        self.logger.setLevel(logging.WARNING)
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno == logging.WARNING:
            self.warnings.append(record.getMessage())


@contextmanager
def _program_on_path() -> Iterator[None]:
    added = str(ROOT) not in sys.path
    if added:
        sys.path.insert(0, str(ROOT))
    try:
        yield
    finally:
        if added:
            sys.path.remove(str(ROOT))


async def _resolve(value: Any) -> Any:
    output = pulumi.Output.from_input(value)
    if await output.is_secret():
        return SECRET
    if not await output.is_known():
        return UNKNOWN
    return sanitize(await output.future())


def sanitize(value: Any) -> Any:
    """Plain JSON for display and snapshots: secrets and unknowns as markers, whole floats as ints."""
    if isinstance(value, Mapping):
        if value.get(_SECRET_SIG) == _SECRET_SIG_VALUE:
            return SECRET
        return {str(k): sanitize(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [sanitize(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if type(value).__name__ == "Unknown":
        return UNKNOWN
    return str(value)
