"""Shared fixtures: a tiny transformer built in the test, fresh databases, configs."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

# Tests never reach the network: any attempt to fetch from the Hugging Face hub fails at once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from kulak.config import Config, DemoConfig, ModelConfig
from storage.db import Database

TINY_WORDS = [
    "good",
    "great",
    "love",
    "thanks",
    "amazing",
    "bad",
    "terrible",
    "lost",
    "never",
    "useless",
    "late",
    "broken",
    "rezalet",
    "berbat",
    "kargo",
    "paket",
    "borzasztó",
    "csomag",
    "the",
    "a",
    "is",
    "my",
    "and",
    "to",
    "of",
    "parcel",
    "delivery",
]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT sequence classifier with a word-level tokenizer, saved to disk."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    from sentiment.encoder import quiet_transformers

    quiet_transformers()
    path = tmp_path_factory.mktemp("tiny-model")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    vocab = {w: i for i, w in enumerate(specials + sorted(set(TINY_WORDS)))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )
    fast.save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        id2label={0: "negative", 1: "neutral", 2: "positive"},
        label2id={"negative": 0, "neutral": 1, "positive": 2},
    )
    BertForSequenceClassification(config).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``models/`` of a kulak data dir shared by the slow tests, so the real e5 is rebuilt once."""
    models = tmp_path_factory.mktemp("kulak-data") / "models"
    models.mkdir()
    return models


@pytest.fixture
def make_config(tmp_path: Path, tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    """Build a Config on a fresh data dir using the tiny model and a small demo source."""

    def build(**changes: object) -> Config:
        cfg = Config(
            data_dir=tmp_path / "data",
            model=ModelConfig(name=str(tiny_model_dir)),
            demo=DemoConfig(posts_per_hour=6),
        )
        return replace(cfg, **changes)

    return build


def _postgres_admin_url() -> str | None:
    url = os.environ.get("KULAK_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CI must test PostgreSQL: .ci/run sets KULAK_TEST_POSTGRES_URL")
        pytest.skip("set KULAK_TEST_POSTGRES_URL to run the PostgreSQL tests (.ci/run does)")
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of a fresh, empty database: SQLite in tmp_path, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin_url = _postgres_admin_url()
    name = f"kulak_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        if not _drop_database(admin_url, name):
            _LEFTOVER_DATABASES.append(name)


# Databases that could not be dropped right after their test (an autovacuum worker, owned by the
# server, may be connected to a fresh database for a moment); dropped again when the session ends.
_LEFTOVER_DATABASES: list[str] = []


def _drop_database(admin_url: str, name: str) -> bool:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import DBAPIError

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        return True
    except DBAPIError:
        return False
    finally:
        admin.dispose()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    url = os.environ.get("KULAK_TEST_POSTGRES_URL")
    for name in _LEFTOVER_DATABASES if url else []:
        _drop_database(url, name)  # best effort: the server's worker has long finished by now


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A migrated, empty database (SQLite and PostgreSQL)."""
    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()
