"""The ``kulak`` command line. Only this module configures logging handlers."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from kulak import __version__
from kulak.config import Config, iter_settings, load_config
from kulak.errors import ConfigError, InputFileError, KulakError
from kulak.pipeline import (
    RunResult,
    brands_from_config,
    build_collectors,
    import_file,
    load_configured_scorer,
    only_source,
    opened_database,
    run_once,
    score_pending,
)
from kulak.training import cmd_train
from storage.db import safe_url

log = logging.getLogger("kulak")


def _parser() -> argparse.ArgumentParser:
    from sentiment.finetune import FinetuneSettings

    p = argparse.ArgumentParser(
        prog="kulak", description="Self-hosted social-media listening and sentiment.", allow_abbrev=False
    )
    p.add_argument("--version", action="version", version=f"kulak {__version__}")
    p.add_argument("--config", type=Path, help="TOML config file (default: ./config.toml when present)")
    p.add_argument("--data-dir", help="where the database and model cache live (data_dir)")
    p.add_argument("--database-url", help="SQLAlchemy URL (database.url)")
    p.add_argument("--model", help="'default', a Hugging Face model id or a checkpoint directory (model.name)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="any setting, e.g. model.batch_size=64"
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="collect, score and summarize on a schedule (Ctrl-C stops)")
    run.add_argument("--once", action="store_true", help="one round, print the summary, exit")
    run.add_argument("--source", metavar="NAME", help="with --once: collect from this source only")

    imp = sub.add_parser("import", help="import mentions from a JSONL or CSV export")
    imp.add_argument("file", type=Path)
    imp.add_argument("--no-score", action="store_true", help="store only; score on the next run")

    score = sub.add_parser("score", help="score the 'text' column of a TSV/CSV/JSONL file")
    score.add_argument("file", type=Path)
    score.add_argument("-o", "--output", type=Path, required=True, help="output file (.tsv, .csv or .jsonl)")

    labels = sub.add_parser("labels", help="people's sentiment corrections: set one, or export them all")
    lsub = labels.add_subparsers(dest="labels_command", required=True, metavar="ACTION")
    lset = lsub.add_parser("set", help="label a mention (its #id is shown in summaries); overrides the model")
    lset.add_argument("mention_id", type=int)
    lset.add_argument("label", choices=["negative", "neutral", "positive"])
    lset.add_argument("--by", default=None, help="who labels it (default: $USER)")
    lexp = lsub.add_parser("export", help="write corrected labels as TSV (text, label) for train-sentiment --extra")
    lexp.add_argument("output", type=Path)

    sub.add_parser("collectors", help="list the installed collectors (built-in and kulak.collectors plug-ins)")

    src = sub.add_parser("sources", help="health of each source: last success, last error, failures, next run")
    src_sub = src.add_subparsers(dest="sources_command", metavar="{test}")
    src_test = src_sub.add_parser("test", help="diagnose one source's credentials and connectivity (stores nothing)")
    src_test.add_argument("name", help="the source's name, as in [sources.<name>]")

    sub.add_parser("rescore", help="score stored mentions that lack a score from the configured model (resumable)")

    ev = sub.add_parser("eval", help="macro-recall and macro-F1 on labelled files (text + label columns)")
    ev.add_argument("files", type=Path, nargs="*", help="labelled files (default with --card: the model card's)")
    ev.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ev.add_argument("--card", type=Path, help="write the model card (e.g. docs/model-card.md) from the standard files")
    ev.add_argument("--data-root", type=Path, default=Path("../shared/data"), help="data root for --card")

    tr = sub.add_parser("train-sentiment", help="train the default model's sentiment head")
    tr.add_argument(
        "--data-root", type=Path, default=Path("../shared/data"), help="labelled data root (has sentiment/)"
    )
    tr.add_argument("-o", "--output", type=Path, default=None, help="head file to write (default: the bundled head)")
    tr.add_argument(
        "--extra", type=Path, action="append", default=[], help="more labelled TSV files, e.g. from labels export"
    )
    tr.add_argument("--english-limit", type=int, default=None, help="sample this many English tweets (default: all)")
    tr.add_argument(
        "--finetune",
        action="store_true",
        help="fine-tune the encoder's top layers with LoRA, starting from the bundled head (writes the adapter)",
    )
    defaults = FinetuneSettings()
    tr.add_argument(
        "--epochs",
        type=int,
        default=defaults.epochs,
        help=f"fine-tuning epochs over the training mix (default {defaults.epochs})",
    )
    tr.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted --finetune after its last finished epoch (same options as before)",
    )
    tr.add_argument(
        "--top-layers",
        type=int,
        default=defaults.top_layers,
        help=f"encoder layers with adapters (default {defaults.top_layers} of 12; more is slower, the rest is cached)",
    )

    bench = sub.add_parser("bench", help="benchmarks: `kulak bench score` measures scoring speed and memory")
    bsub = bench.add_subparsers(dest="bench_command", required=True, metavar="WHAT")
    bscore = bsub.add_parser("score", help="texts/s and peak RSS of the pipeline default, torch and ONNX int8 paths")
    bscore.add_argument("--file", type=Path, help="TSV/CSV/JSONL with a text column (default: demo posts)")
    bscore.add_argument("--limit", type=int, default=1000, help="texts to score (default 1000)")
    bscore.add_argument("--paths", default=",".join(("pipeline", "torch", "onnx-int8")), help="comma-separated")
    bscore.add_argument(
        "--rounds", type=int, default=1, help="run the paths this many times in turn; report the median (default 1)"
    )
    bint8 = bsub.add_parser("int8", help="how far the ONNX int8 path's embeddings and labels sit from fp32")
    bint8.add_argument("--file", type=Path, help="TSV/CSV/JSONL with a text column (default: demo posts)")
    bint8.add_argument("--limit", type=int, default=1000, help="texts to compare (default 1000)")

    cfg = sub.add_parser("config", help="show the effective settings (secrets masked)")
    cfg.add_argument("--docs", action="store_true", help="print the settings as a Markdown table")
    return p


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}.")
        out[key.strip()] = value
    for flag, key in (("data_dir", "data_dir"), ("database_url", "database.url"), ("model", "model.name")):
        if getattr(args, flag) is not None:
            out[key] = getattr(args, flag)
    return out


def _setup_logging(cfg: Config, verbose: int) -> None:
    level = {0: cfg.log_level.upper(), 1: "INFO"}.get(verbose, "DEBUG")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def print_run(result: RunResult) -> None:
    """Print what a run did, any source failures, and the per-brand summary."""
    from reports.summary import render_summary

    for s in result.collected:
        line = f"{s.source}: {s.seen} posts read, {s.new} new mentions stored, {s.unmatched} without a brand"
        print(line + (f" -- FAILED: {s.error}" if s.error else ""))
        for note in s.skipped[:10]:  # what a collector left out, e.g. pages beyond max_pages
            print(f"  note: {note}")
        if len(s.skipped) > 10:
            print(f"  ... and {len(s.skipped) - 10} more notes")
    for warning in result.warnings:
        print(warning)
    print(f"scored {result.scored} mentions\n")
    competitors = {b.name for b in result.brands if b.competitor}
    print(render_summary(result.summaries, competitors=competitors, model=result.model))
    sys.stdout.flush()


def cmd_run(cfg: Config, args: argparse.Namespace) -> int:
    if args.source and not args.once:
        raise ConfigError("--source works with --once; the schedule always runs every enabled source.")
    with opened_database(cfg) as db:
        scorer = load_configured_scorer(cfg)
        if args.once:
            collectors = build_collectors(cfg)
            if args.source:
                collectors = only_source(collectors, args.source)
            print_run(run_once(cfg, db=db, scorer=scorer, collectors=collectors))
            return 0
        from kulak.scheduler import run_forever, source_intervals

        plan = ", ".join(f"{name} every {seconds}s" for name, seconds in source_intervals(cfg).items())
        print(f"kulak collecting: {plan or 'no source enabled'}; press Ctrl-C to stop.", flush=True)
        run_forever(cfg, db=db, scorer=scorer, on_result=print_run)
    print("kulak stopped cleanly.", flush=True)
    return 0


def cmd_import(cfg: Config, args: argparse.Namespace) -> int:
    with opened_database(cfg) as db:
        stats = import_file(cfg, db, args.file)
        for line in stats.skipped[:20]:
            print(f"skipped {args.file}: {line}", file=sys.stderr)
        if len(stats.skipped) > 20:
            print(f"... and {len(stats.skipped) - 20} more skipped rows", file=sys.stderr)
        print(
            f"{args.file}: {stats.seen} rows read, {stats.new} new mentions stored, "
            f"{stats.seen - stats.new - stats.unmatched} already stored, {stats.unmatched} without a brand, "
            f"{len(stats.skipped)} bad rows skipped"
        )
        if stats.new and not args.no_score:
            print(f"scored {score_pending(db, load_configured_scorer(cfg))} mentions")
    return 0


def cmd_labels(cfg: Config, args: argparse.Namespace) -> int:
    import getpass

    from storage import repository as repo

    with opened_database(cfg) as db, db.transaction() as session:
        if args.labels_command == "set":
            try:
                repo.set_correction(session, args.mention_id, args.label, by=args.by or getpass.getuser())
            except KeyError:
                raise InputFileError(f"no mention #{args.mention_id}; ids are shown in the run summary") from None
            print(f"mention #{args.mention_id} is now {args.label} (overrides the model)")
            return 0
        rows = repo.corrected_texts(session)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with args.output.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar=None)
        writer.writerow(["text", "label"])
        writer.writerows([(" ".join(text.split()), label) for text, label in rows])
    print(f"wrote {len(rows)} corrected labels to {args.output}")
    return 0


def cmd_collectors(cfg: Config, args: argparse.Namespace) -> int:
    from listener.registry import collector_registry

    enabled = {"demo"} if cfg.demo.enabled else set()
    enabled |= {name for name, table in cfg.sources.items() if table.get("enabled", True)}
    for entry in sorted(collector_registry().values(), key=lambda e: e.name):
        state = "enabled" if entry.name in enabled else "disabled"
        print(f"{entry.name:<16} {state:<9} {entry.origin}")
    return 0


def cmd_sources(cfg: Config, args: argparse.Namespace) -> int:
    if getattr(args, "sources_command", None) == "test":
        from kulak.diagnose import diagnose, render

        checks = diagnose(cfg, args.name)
        print(render(args.name, checks))
        return 0 if all(c.ok for c in checks) else 1
    from kulak.scheduler import next_run_times
    from reports.health import render_health
    from storage import repository as repo

    with opened_database(cfg) as db:
        with db.transaction() as session:
            records = repo.source_health(session)
        print(render_health(records, next_runs=next_run_times(db)))
    return 0


def cmd_rescore(cfg: Config, args: argparse.Namespace) -> int:
    with opened_database(cfg) as db:
        scorer = load_configured_scorer(cfg)
        done = score_pending(db, scorer)
        print(f"scored {done} stored mentions with {scorer.model_id} ({scorer.model_version}); all are up to date")
    return 0


def cmd_score(cfg: Config, args: argparse.Namespace) -> int:
    from sentiment.datasets import file_format, read_table

    fmt = file_format(args.output)
    table = read_table(args.file)
    scores = load_configured_scorer(cfg).score(table.texts())
    columns = [*table.columns, "sentiment", "negative", "neutral", "positive"]
    rows = [
        {
            **row,
            "sentiment": s.label,
            "negative": f"{s.negative:.4f}",
            "neutral": f"{s.neutral:.4f}",
            "positive": f"{s.positive:.4f}",
        }
        for row, s in zip(table.rows, scores, strict=True)
    ]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with args.output.open("w", encoding="utf-8", newline="") as fh:
        if fmt == "jsonl":
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            if fmt == "tsv":  # TSV has no quoting: tabs and newlines inside values become spaces
                rows = [{k: " ".join(v.split("\t")).replace("\n", " ") for k, v in row.items()} for row in rows]
                writer = csv.DictWriter(fh, fieldnames=columns, delimiter="\t", quoting=csv.QUOTE_NONE)
            else:
                writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    print(f"wrote {len(rows)} scored rows to {args.output}")
    return 0


def cmd_eval(cfg: Config, args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from sentiment.evaluate import evaluate_files, model_card_files, render_model_card, render_table

    files = list(args.files) or (model_card_files(args.data_root) if args.card else [])
    if not files:
        raise InputFileError("give labelled files to evaluate, or --card to evaluate the model card's files.")
    scorer = load_configured_scorer(cfg)
    results = evaluate_files(scorer, files)
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        print(f"model: {scorer.model_id} ({scorer.model_version})\n")
        print(render_table(results))
    if args.card:
        model = f"{scorer.model_id} ({scorer.model_version})"
        # The card's command names a backend other than the default one, so it reproduces the figures.
        backend = "" if cfg.model.backend == "auto" else f" --set model.backend={cfg.model.backend}"
        command = f"kulak{backend} eval --card {args.card} --data-root {args.data_root}"
        date = datetime.now(UTC).strftime("%Y-%m-%d")
        args.card.parent.mkdir(parents=True, exist_ok=True)
        # The default model's head carries what its adapter file recorded about training.
        adapter_meta = getattr(getattr(scorer, "head", None), "meta", None)
        runtime = getattr(getattr(scorer, "encoder", None), "runtime", None)
        card = render_model_card(
            results, model=model, command=command, date=date, adapter_meta=adapter_meta, runtime=runtime
        )
        args.card.write_text(card, encoding="utf-8")
        print(f"\nwrote {args.card}")
    return 0


def _doc_default(value: object) -> str:
    if value is None or value == "":
        return "(empty)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        return f"`{', '.join(value)}`"
    return f"`{value}`"


def cmd_bench(cfg: Config, args: argparse.Namespace) -> int:
    import os
    import tempfile

    from kulak.bench import PATH_HELP, demo_corpus, int8_drift, render, render_drift, run_bench
    from sentiment.datasets import read_table
    from sentiment.e5 import ensure_e5_checkpoint

    texts = read_table(args.file).texts()[: args.limit] if args.file else demo_corpus(args.limit)
    cache_dir = cfg.data_dir / "models"
    if args.bench_command == "int8":
        print(f"corpus: {len(texts)} texts from {args.file or 'the demo source'}", flush=True)
        print(render_drift(int8_drift(texts, cache_dir)))
        return 0
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    unknown = [p for p in paths if p not in PATH_HELP]
    if unknown:
        raise ConfigError(f"unknown bench path {unknown[0]!r}; choose from {', '.join(PATH_HELP)}.")
    if args.rounds < 1:
        raise ConfigError(f"--rounds must be at least 1, got {args.rounds}.")
    ensure_e5_checkpoint(cache_dir)
    print(f"corpus: {len(texts)} texts from {args.file or 'the demo source'}; {os.cpu_count()} CPU cores", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        results = run_bench(texts, paths=paths, cache_dir=cache_dir, workdir=Path(tmp), rounds=args.rounds)
    print(render(results))
    for p in paths:
        print(f"  {p}: {PATH_HELP[p]}")
    return 0


def cmd_config(cfg: Config, args: argparse.Namespace) -> int:
    if args.docs:
        print("| key | environment | default | meaning |\n|---|---|---|---|")
        for info in iter_settings():
            print(f"| `{info.key}` | `{info.env_var}` | {_doc_default(info.default)} | {info.help} |")
        return 0
    for info in iter_settings():
        value: object = cfg
        for part in info.key.split("."):
            value = getattr(value, "import_" if part == "import" else part)
        if info.key == "database.url" and value:
            value = safe_url(str(value))  # a password written into the URL is masked too
        shown = (
            "********"
            if info.secret and value is not None
            else json.dumps(str(value) if isinstance(value, Path) else value)
        )
        print(f"{info.key} = {shown}")
    for brand in brands_from_config(cfg):
        kind = "competitor" if brand.competitor else "own brand"
        print(f"brand {brand.name!r} ({kind}): aliases={list(brand.aliases)} handles={list(brand.handles)}")
    return 0


COMMANDS = {
    "run": cmd_run,
    "import": cmd_import,
    "labels": cmd_labels,
    "collectors": cmd_collectors,
    "sources": cmd_sources,
    "rescore": cmd_rescore,
    "score": cmd_score,
    "eval": cmd_eval,
    "train-sentiment": cmd_train,
    "bench": cmd_bench,
    "config": cmd_config,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kulak`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        cfg = load_config(args.config, overrides=_overrides(args))
        _setup_logging(cfg, args.verbose)
        return COMMANDS[args.command](cfg, args)
    except KulakError as exc:
        print(f"kulak: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kulak: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
