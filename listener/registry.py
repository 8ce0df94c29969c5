"""The collector registry: one plain dict, filled the same way for built-ins and plug-ins.

A third-party package adds a source by declaring an entry point in the ``kulak.collectors``
group whose object is a factory ``(SourceSpec) -> Collector`` (see docs/collectors.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from kulak.errors import ConfigError
from listener.base import Collector, SourceSpec
from listener.demo import demo_collector

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "kulak.collectors"

# Keys every [sources.<name>] table may have, with their types; the rest belongs to the collector.
COMMON_KEYS: Mapping[str, type | tuple[type, ...]] = {
    "enabled": bool,
    "interval": int,
    "max_pages": int,
    "base_url": str,
}


CollectorFactory = Callable[[SourceSpec], Collector]


@dataclass(frozen=True)
class RegisteredCollector:
    """A factory and where it came from (``built-in`` or the distribution that provides it)."""

    name: str
    factory: CollectorFactory
    origin: str


BUILTIN_COLLECTORS: dict[str, CollectorFactory] = {"demo": demo_collector}


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
            raise ConfigError(f"{source}: 'sources.{name}.{key}' must be {getattr(expected, '__name__', expected)}.")
