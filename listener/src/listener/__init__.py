"""The langsmith-dataplane listener: polls the LangSmith control plane and rolls out Agent Servers."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("langsmith-dataplane-listener")
except PackageNotFoundError:  # running from a source checkout without an install
    __version__ = "0.0.0+source"
