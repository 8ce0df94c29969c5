from __future__ import annotations

import re
from pathlib import Path

import pytest

from kulak.config import Config, Secret, iter_settings, load_config
from kulak.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kulak.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("file_value", "env_value", "cli_value", "expected"),
    [
        (None, None, None, 32),  # default
        (48, None, None, 48),  # file beats default
        (48, "64", None, 64),  # environment beats file
        (48, "64", "80", 80),  # CLI beats environment
        (None, None, "80", 80),
    ],
)
def test_config__precedence_is_cli_then_env_then_file_then_default(
    tmp_path: Path, file_value: int | None, env_value: str | None, cli_value: str | None, expected: int
) -> None:
    path = _write(tmp_path, f"[model]\nbatch_size = {file_value}\n" if file_value else "")
    env = {"KULAK_MODEL_BATCH_SIZE": env_value} if env_value else {}
    cli = {"model.batch_size": cli_value} if cli_value else {}
    assert load_config(path, environ=env, overrides=cli).model.batch_size == expected


def test_config__unknown_key_names_the_key_the_file_and_a_suggestion(tmp_path: Path) -> None:
    path = _write(tmp_path, "[model]\nbatch_sise = 4\n")
    with pytest.raises(ConfigError, match=r"kulak\.toml: unknown key 'model\.batch_sise'.*'model\.batch_size'"):
        load_config(path, environ={})


def test_config__wrong_type_names_the_key_and_file(tmp_path: Path) -> None:
    path = _write(tmp_path, '[schedule]\ninterval_seconds = "often"\n')
    with pytest.raises(ConfigError, match=r"kulak\.toml: 'schedule\.interval_seconds' must be integer"):
        load_config(path, environ={})


def test_config__bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"KULAK_DEMO_ENABLED must be true or false"):
        load_config(None, environ={"KULAK_DEMO_ENABLED": "maybe"})


def test_config__invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "[model\n"), environ={})


def test_config__missing_file_says_how_to_start_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config\.example\.toml"):
        load_config(tmp_path / "nope.toml", environ={})


def test_config__secret_in_file_is_refused_and_not_echoed(tmp_path: Path) -> None:
    path = _write(tmp_path, '[database]\npassword = "hunter2-very-secret"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert "KULAK_DATABASE_PASSWORD" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_config__secret_from_environment_is_masked_but_reaches_the_url() -> None:
    cfg = load_config(
        None,
        environ={"KULAK_DATABASE_URL": "postgresql+psycopg://u@db/kulak", "KULAK_DATABASE_PASSWORD": "s3cr3t-pw"},
    )
    assert "s3cr3t" not in repr(cfg)
    assert isinstance(cfg.database.password, Secret)
    assert "s3cr3t-pw" in cfg.database_url


def test_config__brands_are_validated(tmp_path: Path) -> None:
    ok = load_config(
        _write(tmp_path, '[[brands]]\nname = "Acme"\naliases = ["ACME Corp"]\ncompetitor = true\n'), environ={}
    )
    assert ok.brands[0].name == "Acme" and ok.brands[0].competitor
    with pytest.raises(ConfigError, match=r"brands\[1\] needs a non-empty 'name'"):
        load_config(_write(tmp_path, '[[brands]]\naliases = ["x"]\n'), environ={})
    with pytest.raises(ConfigError, match=r"unknown key 'brands\[1\]\.handle'"):
        load_config(_write(tmp_path, '[[brands]]\nname = "A"\nhandle = "@a"\n'), environ={})


def test_config_example__parses_and_documents_every_key() -> None:
    example = ROOT / "config.example.toml"
    cfg = load_config(example, environ={})
    assert isinstance(cfg, Config) and cfg.brands, "the example declares brands"
    text = example.read_text(encoding="utf-8")
    sections: dict[str, str] = {}
    current = ""
    for line in text.splitlines():
        header = re.match(r"^#?\s*\[([a-z_.]+)\]\s*$", line)
        if header:
            current = header.group(1)
        key = re.match(r"^#?\s*([a-z_]+)\s*=", line)
        if key:
            sections[f"{current}.{key.group(1)}" if current else key.group(1)] = line
    for info in iter_settings():
        assert info.key in sections, f"config.example.toml does not document {info.key}"


def test_readme__configuration_table_is_the_generated_one(capsys: pytest.CaptureFixture[str]) -> None:
    from kulak.cli import main

    assert main(["config", "--docs"]) == 0
    table = capsys.readouterr().out.strip()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert table in readme, "README's configuration table is stale: paste `kulak config --docs` into it"
    for info in iter_settings():
        assert f"`{info.key}`" in readme


def test_config__reads_config_toml_in_the_working_directory_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config.toml").write_text("[demo]\nseed = 99\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert load_config(None, environ={}).demo.seed == 99
    (tmp_path / "config.toml").unlink()
    assert load_config(None, environ={}).demo.seed == 7
