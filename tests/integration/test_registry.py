"""Third-party collectors plug in through the kulak.collectors entry point group."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from kulak.cli import main
from kulak.config import Config, load_config
from kulak.errors import ConfigError
from kulak.pipeline import build_collectors, load_configured_scorer, run_once
from listener.registry import collector_registry
from storage.db import Database

PLUGIN = """
from datetime import datetime, timezone

from listener.base import Batch, Mention


class ForumCollector:
    name = "forum"

    def __init__(self, spec):
        self.spec = spec

    def collect(self, cursors):
        when = datetime(2026, 11, 1, tzinfo=timezone.utc)
        post = Mention("forum", "t1", "forum", "https://forum.example/t/1", "ann", "Paketto lost it again", when)
        yield Batch((post,), cursor="t1")


def factory(spec):
    return ForumCollector(spec)
"""


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real installed distribution (dist-info with entry_points.txt) on sys.path."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "kulak_forum_source.py").write_text(PLUGIN, encoding="utf-8")
    dist = site / "kulak_forum_source-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kulak-forum-source\nVersion: 1.0\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text("[kulak.collectors]\nforum = kulak_forum_source:factory\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))


@pytest.mark.usefixtures("installed_plugin")
def test_entry_point__adds_a_source_that_collects_like_a_built_in(
    db: Database, make_config: Callable[..., Config], capsys: pytest.CaptureFixture[str]
) -> None:
    registry = collector_registry()
    assert registry["forum"].origin == "kulak-forum-source"
    assert registry["demo"].origin == "built-in"
    cfg = replace(make_config(), sources={"forum": {"enabled": True, "max_pages": 2}})
    result = run_once(cfg, db=db, scorer=load_configured_scorer(cfg))
    forum = next(s for s in result.collected if s.source == "forum")
    assert (forum.new, forum.error) == (1, None)
    assert main(["collectors"]) == 0
    assert "forum            disabled  kulak-forum-source" in capsys.readouterr().out


def test_unknown_source__names_the_installed_collectors(make_config: Callable[..., Config]) -> None:
    cfg = replace(make_config(), sources={"myspace": {"enabled": True}})
    with pytest.raises(ConfigError, match=r"unknown collector 'myspace'.*installed collectors: bluesky, demo, "):
        build_collectors(cfg)


def test_source_type__picks_the_collector_so_one_type_can_serve_many_sources(
    make_config: Callable[..., Config],
) -> None:
    cfg = replace(make_config(), sources={"news": {"type": "nope"}})
    with pytest.raises(ConfigError, match=r"unknown collector 'nope' for \[sources.news\]"):
        build_collectors(cfg)


def test_source_table__secrets_in_the_file_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "kulak.toml"
    path.write_text('[sources.x]\nbearer_token = "AAAA-very-secret"\n')
    with pytest.raises(ConfigError, match=r"bearer_token_env") as err:
        load_config(path)
    assert "AAAA-very-secret" not in str(err.value)


def test_source_table__common_keys_are_type_checked(tmp_path: Path) -> None:
    path = tmp_path / "k.toml"
    path.write_text('[sources.forum]\nenabled = "yes"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"k\.toml: 'sources\.forum\.enabled' must be bool"):
        load_config(path, environ={})
    path.write_text("[sources.forum]\nmax_pages = true\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"'sources\.forum\.max_pages' must be int"):
        load_config(path, environ={})


@pytest.mark.usefixtures("installed_plugin")
def test_run_once_source__collects_from_that_source_only(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "k.toml"
    cfg.write_text("[sources.forum]\nenabled = true\n", encoding="utf-8")
    args = ["--config", str(cfg), "--data-dir", str(tmp_path / "d"), "--model", str(tiny_model_dir)]
    assert main([*args, "run", "--once", "--source", "forum"]) == 0
    out = capsys.readouterr().out
    assert "forum: 1 posts read, 1 new mentions stored" in out and "demo:" not in out
    assert main([*args, "run", "--once", "--source", "twitter"]) == 2
    assert "source 'twitter' is not enabled (enabled sources: demo, forum)" in capsys.readouterr().err
    assert main([*args, "run", "--source", "forum"]) == 2
    assert "--source works with --once" in capsys.readouterr().err
