"""kulak's settings, declared once with their defaults and help, and loaded with one precedence.

Precedence (pinned by a test): CLI flag > environment (``KULAK_…``) > config file > default.
Every setting is a field of a frozen dataclass below; its help text lives in the field metadata,
and ``config.example.toml`` and the README table are checked against these declarations.
"""

from __future__ import annotations

import difflib
import os
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from kulak.errors import ConfigError

ENV_PREFIX = "KULAK_"
DEFAULT_CONFIG_FILE = Path("config.toml")


class Secret:
    """A value that must never be printed: its repr and str are masked."""

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The real value, for the one place that needs it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def setting(default: Any, help: str, *, secret: bool = False, name: str | None = None) -> Any:
    """Declare one setting: its default, one line of help, and whether it is a secret."""
    meta = {"help": help, "secret": secret, "name": name}
    if isinstance(default, list | dict):
        raise TypeError("use tuples for sequence defaults")
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = setting("", "SQLAlchemy URL; empty means SQLite at <data_dir>/kulak.db (WAL mode).")
    password: Secret | None = setting(
        None, "Database password, merged into the URL; environment only (KULAK_DATABASE_PASSWORD).", secret=True
    )


@dataclass(frozen=True)
class ModelConfig:
    name: str = setting(
        "default",
        "'default' (bundled multilingual-e5-small + kulak's head) or any Hugging Face "
        "sequence-classification model id or local checkpoint directory.",
    )
    head: str = setting("", "Sentiment head file for the default model; empty means the bundled one.")
    backend: str = setting(
        "auto",
        "Encoder runtime of the default model: 'auto' (torch fp16 on CUDA, else onnx-int8), 'torch' or 'onnx-int8'.",
    )
    batch_size: int = setting(32, "Texts per scoring batch (batches are sorted by token count).")
    max_length: int = setting(256, "Longest input in tokens; longer posts are truncated.")


@dataclass(frozen=True)
class LanguageConfig:
    enabled: bool = setting(True, "Detect each mention's language (lingua) and store it beside the platform's tag.")
    candidates: tuple[str, ...] = setting(
        ("en", "tr", "hu", "de", "fr", "es", "it", "pt", "nl", "ar", "ru", "hi"),
        "ISO 639-1 codes to choose from; each costs about 40 MB of memory.",
    )


@dataclass(frozen=True)
class ScheduleConfig:
    interval_seconds: int = setting(300, "How often `kulak run` collects, scores and reports.")
    misfire_grace_seconds: int = setting(120, "A run this late is still run; later ones are skipped.")
    jitter_seconds: int = setting(10, "Random delay added to each run so sources are not hit in lockstep.")


@dataclass(frozen=True)
class DemoConfig:
    enabled: bool = setting(True, "Collect from the built-in demo source (fictional brands).")
    seed: int = setting(7, "Seed of the demo source; the same seed gives the same posts.")
    posts_per_hour: int = setting(40, "Average demo posts per simulated hour.")
    step_minutes: int = setting(180, "Simulated minutes the demo clock advances per collection.")
    start: str = setting("2026-11-02T00:00:00Z", "Simulated time of the demo's first post (UTC).")


@dataclass(frozen=True)
class ReportConfig:
    top_negative: int = setting(3, "Most negative posts listed per brand in the summary.")
    window_hours: int = setting(0, "Summarize only mentions this recent (0 = everything stored).")


@dataclass(frozen=True)
class ImportColumns:
    id: str = setting("id", "Column holding the post's id (unique per source).")
    text: str = setting("text", "Column holding the post's text.")
    author: str = setting("author", "Column holding the author's handle.")
    url: str = setting("url", "Column holding the link to the original post.")
    created_at: str = setting("created_at", "Column holding the post time (ISO 8601 or Unix seconds).")
    platform: str = setting("platform", "Column holding the platform name.")
    followers: str = setting("followers", "Column holding the author's follower count.")
    engagement: str = setting("engagement", "Column holding likes + reposts + replies.")
    language: str = setting("language", "Column holding a language code.")


@dataclass(frozen=True)
class ImportConfig:
    source: str = setting("import", "Source name recorded for imported mentions.")
    columns: ImportColumns = field(default_factory=ImportColumns)


@dataclass(frozen=True)
class BrandConfig:
    """One brand to listen for (``[[brands]]`` tables)."""

    name: str
    aliases: tuple[str, ...] = ()
    handles: tuple[str, ...] = ()
    competitor: bool = False


@dataclass(frozen=True)
class Config:
    data_dir: Path = setting(Path("kulak-data"), "Where the SQLite database, the built default model and caches live.")
    log_level: str = setting("WARNING", "Logging level: DEBUG, INFO, WARNING or ERROR.")
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    language: LanguageConfig = field(default_factory=LanguageConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    import_: ImportConfig = field(default_factory=ImportConfig, metadata={"name": "import"})
    brands: tuple[BrandConfig, ...] = field(default=(), metadata={"help": "[[brands]] tables."})
    sources: Mapping[str, Mapping[str, Any]] = field(
        default_factory=dict, metadata={"help": "[sources.<name>] tables, one per collector."}
    )

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL to use, with the password from the environment merged in."""
        from sqlalchemy.engine import make_url

        url = self.database.url or f"sqlite:///{self.data_dir / 'kulak.db'}"
        if self.database.password is not None:
            return make_url(url).set(password=self.database.password.reveal()).render_as_string(hide_password=False)
        return url


@dataclass(frozen=True)
class SettingInfo:
    """One leaf setting, as listed by ``kulak config`` and checked against the docs."""

    key: str
    type: Any
    default: Any
    help: str
    secret: bool

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.key.replace(".", "_").upper()


def _field_name(f: Any) -> str:
    return str(f.metadata.get("name") or f.name)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, globalns=globals())


def iter_settings(cls: type = Config, prefix: str = "") -> Iterator[SettingInfo]:
    """Every scalar setting with its dotted key (brands are documented separately)."""
    hints = _hints(cls)
    instance = cls()
    for f in fields(cls):
        if f.name in ("brands", "sources"):
            continue
        key = prefix + _field_name(f)
        ftype = hints[f.name]
        if is_dataclass(ftype):
            yield from iter_settings(typing.cast(type, ftype), key + ".")
        else:
            meta = f.metadata
            yield SettingInfo(key, ftype, getattr(instance, f.name), meta["help"], bool(meta["secret"]))


def _type_name(tp: Any) -> str:
    if tp is Path:
        return "path"
    if tp in (Secret | None,):
        return "secret"
    return {str: "string", int: "integer", bool: "boolean", float: "number"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any, *, where: str) -> Any:
    """Check a file/env value against the declared type; ``where`` names it in errors."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union) and type(None) in typing.get_args(tp):
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _coerce(value, inner, where=where)
    if tp is Secret:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string.")
        return Secret(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is Path:
        if isinstance(value, str):
            return Path(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(f"{where} must be a list of strings, got {value!r}.")
    shown = "a secret" if tp is Secret else repr(value)
    raise ConfigError(f"{where} must be {_type_name(tp)}, got {type(value).__name__} {shown}.")


def _parse_text(text: str, tp: Any, *, where: str) -> Any:
    """Turn an environment or CLI string into the declared type."""
    base = tp
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        base = next(a for a in typing.get_args(tp) if a is not type(None))
    if base is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where} must be true or false, got {text!r}.")
    if base is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{where} must be an integer, got {text!r}.") from None
    if base is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{where} must be a number, got {text!r}.") from None
    if typing.get_origin(base) is tuple:
        return tuple(part.strip() for part in text.split(",") if part.strip())
    return _coerce(text, tp, where=where)


def _unknown_key(key: str, known: list[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else " See config.example.toml for every key."
    return ConfigError(f"{where}: unknown key {key!r}.{hint}")


def _build(cls: type, data: Mapping[str, Any], *, prefix: str, source: str) -> Any:
    hints = _hints(cls)
    by_name = {_field_name(f): f for f in fields(cls)}
    for key in data:
        if key not in by_name:
            raise _unknown_key(prefix + key, [prefix + k for k in by_name], source)
    values: dict[str, Any] = {}
    for name, f in by_name.items():
        if name not in data:
            continue
        value, tp, key = data[name], hints[f.name], prefix + name
        if f.name == "brands":
            values[f.name] = _build_brands(value, source=source)
        elif f.name == "sources":
            values[f.name] = _build_sources(value, source=source)
        elif is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {key!r} must be a table ([{key}]).")
            values[f.name] = _build(typing.cast(type, tp), value, prefix=key + ".", source=source)
        else:
            if f.metadata.get("secret"):
                raise ConfigError(
                    f"{source}: {key!r} is a secret and is read only from the environment; "
                    f"remove it from the file and set {ENV_PREFIX + key.replace('.', '_').upper()} instead."
                )
            values[f.name] = _coerce(value, tp, where=f"{source}: {key!r}")
    return cls(**values)


def _build_brands(value: Any, *, source: str) -> tuple[BrandConfig, ...]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{source}: 'brands' must be a list of [[brands]] tables.")
    brands = []
    for i, table in enumerate(value, start=1):
        where = f"{source}: brands[{i}]"
        if not isinstance(table.get("name"), str) or not table["name"].strip():
            raise ConfigError(f"{where} needs a non-empty 'name'.")
        brands.append(_build(BrandConfig, table, prefix=f"brands[{i}].", source=source))
    names = [b.name.casefold() for b in brands]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{source}: brand {dupes[0]!r} is declared more than once.")
    return tuple(brands)


def _build_sources(value: Any, *, source: str) -> dict[str, dict[str, Any]]:
    from listener.registry import check_source_table

    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ConfigError(f"{source}: 'sources' must hold one [sources.<name>] table per collector.")
    for name, table in value.items():
        check_source_table(name, table, source=source)
    return {name: dict(table) for name, table in value.items()}


def _set_dotted(cfg: Any, key: str, value: Any) -> Any:
    head, _, rest = key.partition(".")
    for f in fields(cfg):
        if _field_name(f) == head:
            new = _set_dotted(getattr(cfg, f.name), rest, value) if rest else value
            return replace(cfg, **{f.name: new})
    raise ConfigError(f"unknown setting {key!r}")


def load_config(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Config:
    """Load settings: defaults, then ``path`` (or ./config.toml if present), then env, then CLI.

    ``overrides`` maps dotted keys (``model.name``) to strings, as given on the command line.
    """
    environ = os.environ if environ is None else environ
    if path is None and DEFAULT_CONFIG_FILE.is_file():
        path = DEFAULT_CONFIG_FILE
    cfg = Config()
    if path is not None:
        cfg = _build(Config, read_toml(path), prefix="", source=str(path))
    infos = {info.key: info for info in iter_settings()}
    for info in infos.values():
        if info.env_var in environ:
            value = _parse_text(environ[info.env_var], info.type, where=f"environment variable {info.env_var}")
            cfg = _set_dotted(cfg, info.key, value)
    for key, text in (overrides or {}).items():
        if key not in infos:
            raise _unknown_key(key, list(infos), "command line")
        if infos[key].secret:
            raise ConfigError(f"{key!r} is a secret; set {infos[key].env_var} in the environment instead.")
        cfg = _set_dotted(cfg, key, _parse_text(text, infos[key].type, where=f"command-line setting {key!r}"))
    return cfg


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; a missing or malformed file is a :class:`ConfigError`."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; copy config.example.toml to start one.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}.") from None
