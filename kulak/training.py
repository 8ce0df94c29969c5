"""``kulak train-sentiment``: train the head or fine-tune the adapters, then check them on int8.

The fine-tune keeps the epoch whose validation is best on the int8 path, the one kulak scores
with, and compares it with the adapter it replaces (README, "Training the head").
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kulak.config import Config
from kulak.errors import ConfigError, InputFileError, ModelError

if TYPE_CHECKING:
    import numpy as np

    from sentiment.finetune import Adapter

# A fine-tune that beats the adapter it replaces by less than this (mean validation macro-recall on
# the int8 path) is within the validation sets' noise; see README, "Training the head".
MIN_VALIDATION_GAIN = 0.01


def cmd_train(cfg: Config, args: argparse.Namespace) -> int:
    """Train the sentiment head, or with ``--finetune`` the adapters; prints the validation figures."""
    from sentiment.e5 import ensure_e5_checkpoint
    from sentiment.encoder import Encoder
    from sentiment.scorer import BUNDLED_HEAD
    from sentiment.train import TrainSettings, default_train_files, default_val_files, train_sentiment

    if args.resume and not args.finetune:
        raise ConfigError("--resume continues an interrupted fine-tune; use it with --finetune.")
    root: Path = args.data_root
    train_files, val_files = default_train_files(root) + list(args.extra), default_val_files(root)
    missing = [str(p) for p in train_files + val_files if not p.is_file()]
    if missing:
        raise InputFileError(
            f"training data not found: {', '.join(missing[:3])}. Point --data-root at the folder that holds sentiment/."
        )
    checkpoint = ensure_e5_checkpoint(cfg.data_dir / "models")
    if args.finetune:
        return _finetune(cfg, args, checkpoint, train_files, val_files)
    encoder = Encoder.from_pretrained(checkpoint, max_length=cfg.model.max_length)
    head, val = train_sentiment(
        encoder,
        train_files=train_files,
        val_files=val_files,
        cache_dir=cfg.data_dir / "cache" / "embeddings",
        encoder_tag=checkpoint.name,
        settings=TrainSettings(english_limit=args.english_limit),
    )
    out = args.output or BUNDLED_HEAD
    head.save(out)
    return _report_training(val, out, "sentiment head")


def _report_training(scores: dict[str, float], out: Path, what: str) -> int:
    for name, value in scores.items():
        print(f"  validation macro-recall {name:<24} {value:.4f}")
    print(f"wrote {what} to {out} ({out.stat().st_size / 1024:.0f} KiB)")
    return 0


def _finetune(cfg: Config, args: argparse.Namespace, checkpoint: Path, train: list[Path], val: list[Path]) -> int:
    import numpy as np

    from sentiment.finetune import Adapter, FinetuneSettings, finetune, load_base
    from sentiment.head import Head
    from sentiment.scorer import BUNDLED_ADAPTER, BUNDLED_HEAD
    from sentiment.train import HELD_OUT_FILES, XLMT_LANGUAGES, read_labelled, split_held_out

    model, tokenizer = load_base(checkpoint)
    sets, vals = [], [read_labelled(p) for p in val]
    for p in train:
        data = read_labelled(p, limit=args.english_limit if p.name.startswith("en_tweets") else None)
        if p.name in HELD_OUT_FILES:
            data, held = split_held_out(data)
            vals.append(held)
        sets.append(data)
    upsample = {f"{lang}_": 2 for lang in XLMT_LANGUAGES} | {"hu_sst_": 3}
    settings = FinetuneSettings(epochs=args.epochs, top_layers=args.top_layers, upsample=upsample)
    val_sets = [(s.name, s.texts, np.asarray(s.labels)) for s in vals]
    checkpoint_path = cfg.data_dir / "cache" / "finetune" / "adapter.npz"  # one file per epoch, to compare
    adapter, _ = finetune(
        model,
        tokenizer,
        Head.load(BUNDLED_HEAD),
        train=[(s.name, s.texts, s.labels) for s in sets],
        val=val_sets,
        cache_dir=cfg.data_dir / "cache" / "finetune",
        encoder_tag=checkpoint.name,
        settings=settings,
        checkpoint_path=checkpoint_path,
        resume=args.resume,
    )
    del model  # the int8 exports below run in a child process that needs about 1.4 GB
    out = args.output or BUNDLED_ADAPTER
    before = _previous_adapter(out)
    epoch_files = [checkpoint_path.with_suffix(f".epoch{k}.npz") for k in range(1, settings.epochs + 1)]
    epochs = [Adapter.load(p) for p in epoch_files]
    chosen = _choose_on_int8(checkpoint, epochs, val_sets, keep=before.digest if before else None)
    if chosen is None:
        chosen = adapter  # no int8 path here: the epoch with the best fp32 validation
    chosen.save(out)
    _report_training(chosen.meta["validation_macro_recall"], out, "LoRA adapters and head")
    if before is not None and "int8_validation_macro_recall" in chosen.meta:
        _compare_with_replaced(checkpoint, before, chosen, val_sets)
    return 0


def _previous_adapter(path: Path) -> Adapter | None:
    """The adapter a fine-tune is about to replace, to compare with; None if there is none."""
    from sentiment.finetune import Adapter

    try:
        return Adapter.load(path) if path.is_file() else None
    except (ModelError, OSError, ValueError, KeyError):
        return None  # a head-only or foreign file: nothing to compare with


def _mean(scores: dict[str, float]) -> float:
    return sum(scores.values()) / len(scores)


def _choose_on_int8(
    checkpoint: Path,
    epochs: list[Adapter],
    val: Sequence[tuple[str, Sequence[str], np.ndarray]],
    *,
    keep: str | None,
) -> Adapter | None:
    """The epoch with the best mean validation macro-recall on the int8 path kulak scores with.

    How much int8 costs depends on the adapter (docs/benchmarks.md), so the epochs are compared
    where the bundled model runs. Each epoch is exported once (about 40 s and 1.4 GB); the
    exports of the epochs not kept are deleted, except the one of the adapter digest ``keep`` (the
    adapter being replaced, which a running kulak may still use). None when the int8 path is not
    available here.
    """
    import shutil
    from dataclasses import replace

    from sentiment.onnx_backend import int8_validation

    print(f"choosing among {len(epochs)} epoch(s) on the int8 path (the CPU default; each is exported once)")
    scored = []
    for adapter in epochs:
        try:
            int8, export = int8_validation(checkpoint, adapter, val)
        except ModelError as exc:
            print(f"int8 check skipped, keeping the epoch with the best fp32 validation: {exc}")
            return None
        fp32 = adapter.meta["validation_macro_recall"]
        epoch = adapter.meta["epoch"]
        print(f"  epoch {epoch}: mean validation macro-recall int8 {_mean(int8):.4f}, fp32 {_mean(fp32):.4f}")
        scored.append((_mean(int8), int8, adapter, export))
    best_mean, int8, best, export = max(scored, key=lambda s: s[0])
    for _, _, adapter, other in scored:
        if other != export and adapter.digest != keep:
            shutil.rmtree(other, ignore_errors=True)
    fp32 = best.meta["validation_macro_recall"]
    for name, value in int8.items():
        print(f"  int8 validation macro-recall {name:<24} {value:.4f} (fp32 {fp32[name]:.4f})")
    cost = (_mean(fp32) - best_mean) * 100
    print(
        f"kept epoch {best.meta['epoch']}: int8 {best_mean:.4f}, fp32 {_mean(fp32):.4f} (int8 costs {cost:.2f} points)"
    )
    if cost > 1.0:
        print(
            "warning: int8 costs this adapter more than 1 point on validation (docs/benchmarks.md); "
            "check it before shipping it, or score with model.backend = 'torch'."
        )
    meta = {**best.meta, "int8_validation_macro_recall": int8, "selected_on": "int8 validation"}
    return replace(best, meta=meta)


def _compare_with_replaced(
    checkpoint: Path, before: Adapter, chosen: Adapter, val: Sequence[tuple[str, Sequence[str], np.ndarray]]
) -> None:
    """The replaced adapter on the same validation sets and path, with a warning if it was as good."""
    import numpy as np

    from sentiment.onnx_backend import int8_validation

    new = _mean(chosen.meta["int8_validation_macro_recall"])
    same = before.digest == chosen.digest and all(
        np.array_equal(getattr(before.head, k), getattr(chosen.head, k)) for k in ("w1", "b1", "w2", "b2")
    )
    try:  # a rerun that writes the same adapter again need not score it twice
        old = new if same else _mean(int8_validation(checkpoint, before, val)[0])
    except ModelError as exc:
        print(f"could not score the replaced adapter on the int8 path: {exc}")
        return
    print(f"the adapter it replaced: int8 {old:.4f} on the same validation sets (this one: {new:.4f})")
    if new <= old:
        verdict = "is no better than the one it replaced"
    elif new - old < MIN_VALIDATION_GAIN:
        verdict = (
            f"gains {100 * (new - old):.2f} points, within the noise of these validation sets "
            f"(under {100 * MIN_VALIDATION_GAIN:.0f}; an XLM-T validation file has 324 rows)"
        )
    else:
        return
    print(
        f"warning: on the int8 path this adapter {verdict}; to keep the replaced one, restore the file "
        "(for the bundled adapter: git checkout sentiment/assets/sentiment-adapter.npz)."
    )
