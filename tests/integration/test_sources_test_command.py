"""`kulak sources test NAME`: credentials and connectivity diagnosed in plain words, nothing stored."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kulak.cli import main
from kulak.config import Config
from kulak.diagnose import diagnose, render
from kulak.errors import AuthError, ConfigError, RateLimited, SourceUnavailable
from listener.base import Batch, Mention, SourceSpec
from listener.registry import RegisteredCollector
from tests.fakeplatform.core import FakePlatform
from tests.fakeplatform.hackernews import HNItem, install


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


def test_sources_test__cli_against_a_real_collector_and_a_fake_platform(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakePlatform() as platform:
        hn = install(platform)
        hn.add(HNItem("1", 1_762_074_000, "ann", comment_text="Paketto lost my parcel"))
        config = tmp_path / "kulak.toml"
        config.write_text(
            f'[[brands]]\nname = "Paketto"\n[sources.hn]\ntype = "hackernews"\nbase_url = "{platform.url}/api/v1"\n'
            '[sources.x]\nbearer_token_env = "KULAK_TEST_UNSET_X_TOKEN"\n',
            encoding="utf-8",
        )
        base = ["--config", str(config), "--data-dir", str(tmp_path / "d"), "--model", str(tiny_model_dir)]
        assert main([*base, "sources", "test", "hn"]) == 0
        out = capsys.readouterr().out
        assert "source 'hn' works" in out and "the first page had 1 posts, 1 of them mention" in out
        assert main([*base, "sources", "test", "x"]) == 1
        out = capsys.readouterr().out
        assert "FAIL  credentials" in out and "KULAK_TEST_UNSET_X_TOKEN" in out
        assert main([*base, "sources"]) == 0, "a diagnosis stores nothing"
        assert "No collection has run yet" in capsys.readouterr().out
