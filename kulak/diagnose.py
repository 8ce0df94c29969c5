"""``kulak sources test NAME``: is this source configured, are its credentials accepted, does it answer?

Builds the source's collector exactly as ``kulak run`` does, reads one page without storing
anything, and says in plain words what works and what to fix.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from kulak.config import Config
from kulak.errors import AuthError, ConfigError, RateLimited, SourceError, SourceUnavailable
from kulak.pipeline import brands_from_config
from listener.base import SourceSpec
from listener.brands import BrandMatcher
from listener.http import UsageCapped
from listener.registry import RegisteredCollector, collector_registry


@dataclass(frozen=True)
class Check:
    """One line of the diagnosis."""

    ok: bool
    what: str
    detail: str

    def render(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.what}: {self.detail}"


def _source_options(cfg: Config, name: str) -> dict[str, Any]:
    if name == "demo":
        from dataclasses import asdict

        return asdict(cfg.demo)
    if name not in cfg.sources:
        configured = ", ".join(sorted({"demo", *cfg.sources})) or "none"
        raise ConfigError(f"no source {name!r} in the configuration (configured: {configured}); add [sources.{name}].")
    return dict(cfg.sources[name])


def _advice(exc: SourceError) -> tuple[str, str]:
    """(what failed, plain-words detail) for an error met while reading the first page."""
    if isinstance(exc, AuthError):
        return "credentials", f"rejected or missing. {exc}"
    if isinstance(exc, UsageCapped):
        return "account", f"credentials work, but {exc}"
    if isinstance(exc, RateLimited):
        return "rate limit", f"credentials work, but the platform asks kulak to slow down now. {exc}"
    if isinstance(exc, SourceUnavailable):
        return "connectivity", f"the platform could not be read. {exc} Check base_url, the network and proxies."
    return "request", str(exc)


def diagnose(
    cfg: Config, name: str, *, registry: dict[str, RegisteredCollector] | None = None, clock: Any = time.monotonic
) -> list[Check]:
    """Diagnose one source; the last check fails when anything is wrong."""
    options = _source_options(cfg, name)
    registry = collector_registry() if registry is None else registry
    kind = str(options.get("type") or name)
    checks: list[Check] = []
    if kind not in registry:
        return [Check(False, "collector", f"no collector named {kind!r} is installed (see `kulak collectors`).")]
    state = "enabled" if options.get("enabled", True) else "disabled in the config (tested anyway)"
    checks.append(Check(True, "configuration", f"[sources.{name}] uses the {kind} collector ({state})."))
    brands = brands_from_config(cfg)
    # One quick attempt: a diagnosis reports a rate limit instead of waiting it out.
    spec = SourceSpec(name, brands, {**options, "max_retries": 0, "max_pages": 1}, sleep=lambda _s: None)
    try:
        collector = registry[kind].factory(spec)
    except SourceError as exc:
        return [*checks, Check(False, *_advice(exc))]
    checks.append(Check(True, "collector", "built from the configuration; now reading one page."))
    started = clock()
    try:
        batch = next(iter(collector.collect({})), None)
    except SourceError as exc:
        return [*checks, Check(False, *_advice(exc))]
    elapsed = clock() - started
    mentions = batch.mentions if batch is not None else ()
    matched = sum(1 for m in mentions if BrandMatcher(brands).match(m.text))
    checks.append(
        Check(
            True,
            "connectivity",
            f"answered in {elapsed:.1f}s; credentials accepted; the first page had {len(mentions)} posts, "
            f"{matched} of them mention a configured brand. Nothing was stored.",
        )
    )
    return checks


def render(name: str, checks: list[Check]) -> str:
    verdict = "works" if checks and all(c.ok for c in checks) else "needs attention"
    return "\n".join([f"source {name!r} {verdict}:", *(c.render() for c in checks)])
