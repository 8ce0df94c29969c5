"""The collector registry: one plain dict, filled the same way for built-ins and plug-ins.

A third-party package adds a source by declaring an entry point in the ``kulak.collectors``
group whose object is a factory ``(SourceSpec) -> Collector`` (see docs/collectors.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from kulak.errors import ConfigError
from listener.base import Collector, SourceSpec
from listener.demo import demo_collector

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "kulak.collectors"

# Keys every [sources.<name>] table may have, with their types; the rest belongs to the collector.
COMMON_KEYS: Mapping[str, type | tuple[type, ...]] = {
    "type": str,
    "enabled": bool,
    "interval": int,
    "max_pages": int,
    "max_retries": int,
    "timeout": (int, float),
    "base_url": str,
}


# Secrets never go in a config file: these keys are refused (their ``*_env`` forms are the way).
SECRET_LIKE_KEYS = frozenset(
    {"bearer_token", "client_secret", "access_token", "app_password", "password", "api_key", "api_secret", "token"}
)

CollectorFactory = Callable[[SourceSpec], Collector]


@dataclass(frozen=True)
class RegisteredCollector:
    """A factory and where it came from (``built-in`` or the distribution that provides it)."""

    name: str
    factory: CollectorFactory
    origin: str


def _builtin(target: str) -> CollectorFactory:
    """A built-in factory imported on first use, so one client library's import cost or absence
    never affects the other sources."""

    def factory(spec: SourceSpec) -> Collector:
        module, attr = target.split(":")
        return getattr(import_module(module), attr)(spec)  # type: ignore[no-any-return]

    return factory


BUILTIN_COLLECTORS: dict[str, CollectorFactory] = {
    "demo": demo_collector,
    "x": _builtin("listener.x:x_collector"),
    "reddit": _builtin("listener.reddit:reddit_collector"),
    "mastodon": _builtin("listener.mastodon:mastodon_collector"),
    "bluesky": _builtin("listener.bluesky:bluesky_collector"),
    "hackernews": _builtin("listener.hackernews:hackernews_collector"),
    "rss": _builtin("listener.rss:rss_collector"),
}


def collector_registry(*, plugins: Iterable[EntryPoint] | None = None) -> dict[str, RegisteredCollector]:
    """Built-in collectors plus every ``kulak.collectors`` entry point; a built-in name wins."""
    registry = {name: RegisteredCollector(name, f, "built-in") for name, f in BUILTIN_COLLECTORS.items()}
    for ep in plugins if plugins is not None else entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in registry:
            log.warning("collector %r from %s ignored: the name is taken", ep.name, ep.value)
            continue
        origin = ep.dist.name if ep.dist is not None else ep.value
        registry[ep.name] = RegisteredCollector(ep.name, _lazy(ep), origin)
    return registry


def _lazy(ep: EntryPoint) -> CollectorFactory:
    def factory(spec: SourceSpec) -> Collector:
        try:
            loaded = ep.load()
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"collector {ep.name!r} ({ep.value}) cannot be loaded: {exc}") from None
        return loaded(spec)  # type: ignore[no-any-return]

    return factory


def check_source_table(name: str, table: Mapping[str, Any], *, source: str) -> None:
    """Type-check the common keys of ``[sources.<name>]``; ``source`` names the config file."""
    for key, expected in COMMON_KEYS.items():
        if key in table and (
            not isinstance(table[key], expected) or isinstance(table[key], bool) != (expected is bool)
        ):
            names = " or ".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
            raise ConfigError(f"{source}: 'sources.{name}.{key}' must be {names}.")
    for key, value in table.items():
        if key.endswith("_env") and not isinstance(value, str):
            raise ConfigError(f"{source}: 'sources.{name}.{key}' must name an environment variable (a string).")
        if key in SECRET_LIKE_KEYS:
            raise ConfigError(
                f"{source}: 'sources.{name}.{key}' looks like a secret in the config file; put the secret in an "
                f"environment variable and name it with '{key}_env' instead."
            )
