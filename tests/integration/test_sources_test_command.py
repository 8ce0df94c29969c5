"""`kulak sources test NAME`: credentials and connectivity diagnosed in plain words, nothing stored."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from kulak.config import Config
from kulak.diagnose import diagnose, render
from kulak.errors import AuthError, ConfigError, RateLimited, SourceUnavailable
from listener.base import Batch, Mention, SourceSpec
from listener.registry import RegisteredCollector


class ScriptedCollector:
    """Answers its first page the way the test says."""

    def __init__(self, spec: SourceSpec, outcome: Exception | None) -> None:
        self.name, self.spec, self.outcome = spec.name, spec, outcome

    def collect(self, cursors: Mapping[str, str]) -> Iterator[Batch]:
        if self.outcome is not None:
            raise self.outcome
        when = datetime(2026, 11, 2, tzinfo=UTC)
        posts = (
            Mention(self.name, "1", "forum", "https://f.example/1", "ann", "Paketto is late", when),
            Mention(self.name, "2", "forum", "https://f.example/2", "bob", "nothing to see", when),
        )
        yield Batch(posts, cursor="2")


def _registry(outcome: Exception | None, seen: list[SourceSpec]) -> dict[str, RegisteredCollector]:
    def factory(spec: SourceSpec) -> ScriptedCollector:
        seen.append(spec)
        spec.credential("token")  # like a real collector: credentials are read when it is built
        return ScriptedCollector(spec, outcome)

    return {"forum": RegisteredCollector("forum", factory, "test")}


@pytest.fixture
def cfg(make_config: Callable[..., Config], monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("FORUM_TOKEN", "s3cret-value")
    return replace(make_config(), sources={"forum": {"token_env": "FORUM_TOKEN", "max_pages": 9}})


def test_sources_test__a_working_source_reports_what_its_first_page_held(cfg: Config) -> None:
    seen: list[SourceSpec] = []
    checks = diagnose(cfg, "forum", registry=_registry(None, seen))
    text = render("forum", checks)
    assert all(c.ok for c in checks)
    assert "source 'forum' works" in text
    assert "the first page had 2 posts, 1 of them mention a configured brand. Nothing was stored." in text
    assert seen[0].max_pages == 1 and seen[0].policy().max_retries == 0, "a diagnosis reads one page, no retries"


@pytest.mark.parametrize(
    ("outcome", "what", "phrase"),
    [
        (AuthError("forum rejected the credentials (HTTP 401)"), "credentials", "rejected or missing"),
        (RateLimited("HTTP 429", retry_after=900), "rate limit", "credentials work, but the platform asks"),
        (SourceUnavailable("forum timed out"), "connectivity", "Check base_url, the network and proxies"),
    ],
)
def test_sources_test__each_failure_is_named_in_plain_words(
    cfg: Config, outcome: Exception, what: str, phrase: str
) -> None:
    checks = diagnose(cfg, "forum", registry=_registry(outcome, []))
    assert not checks[-1].ok and checks[-1].what == what
    assert phrase in checks[-1].detail
    assert "needs attention" in render("forum", checks)


def test_sources_test__a_missing_variable_is_named_and_no_secret_is_printed(
    cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FORUM_TOKEN")
    checks = diagnose(cfg, "forum", registry=_registry(None, []))
    assert (checks[-1].ok, checks[-1].what) == (False, "credentials")
    assert "FORUM_TOKEN" in checks[-1].detail and "token_env" in checks[-1].detail


def test_sources_test__an_unknown_source_lists_the_configured_ones(cfg: Config) -> None:
    with pytest.raises(ConfigError, match=r"no source 'nope' in the configuration \(configured: demo, forum\)"):
        diagnose(cfg, "nope", registry=_registry(None, []))
