"""``kulak train-sentiment``: fit the sentiment head on frozen encoder embeddings.

Only train and validation splits are read; the head's shape and regularization are chosen on the
validation files, never on a test split.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from kulak.errors import ModelError
from kulak.progress import progress
from sentiment.datasets import read_table
from sentiment.encoder import Encoder
from sentiment.head import Head
from sentiment.metrics import evaluate
from sentiment.types import LABELS

log = logging.getLogger(__name__)

XLMT_LANGUAGES = ("arabic", "english", "french", "german", "hindi", "italian", "portuguese", "spanish")


def default_train_files(data_root: Path) -> list[Path]:
    """The multilingual training mix: English tweets, XLM-T tweets, Hungarian and Turkish sentences."""
    s = data_root / "sentiment"
    files = [s / "en_tweets_train.tsv", s / "hu_sst_train.tsv", s / "tr_reviews_train.tsv"]
    return files + [s / "xlmt" / f"{lang}_train.tsv" for lang in XLMT_LANGUAGES]


def default_val_files(data_root: Path) -> list[Path]:
    """Validation files used to pick the head's hyper-parameters."""
    s = data_root / "sentiment"
    return [s / "en_tweets_val.tsv"] + [s / "xlmt" / f"{lang}_val.tsv" for lang in XLMT_LANGUAGES]


@dataclass(frozen=True)
class LabelledSet:
    """Texts with gold labels read from one file."""

    name: str
    texts: list[str]
    labels: np.ndarray  # class indices into LABELS


def read_labelled(path: Path, *, limit: int | None = None, seed: int = 0) -> LabelledSet:
    """Read a labelled file; ``limit`` keeps a seeded random sample of that many rows."""
    if "test" in path.name:
        raise ModelError(f"{path} is a test split; kulak never trains or tunes on test data.")
    table = read_table(path)
    texts, labels = table.texts(), table.labels()
    if limit is not None and limit < len(texts):
        keep = np.random.default_rng(seed).choice(len(texts), size=limit, replace=False)
        texts = [texts[i] for i in sorted(keep)]
        labels = [labels[i] for i in sorted(keep)]
    y = np.array([LABELS.index(label) for label in labels], dtype=np.int64)
    return LabelledSet(name=path.name, texts=texts, labels=y)


HELD_OUT_FRACTION = 0.1
HELD_OUT_FILES = ("hu_sst_train.tsv", "tr_reviews_train.tsv")  # no validation file of their own


def split_held_out(
    data: LabelledSet, *, fraction: float = HELD_OUT_FRACTION, seed: int = 0
) -> tuple[LabelledSet, LabelledSet]:
    """A seeded ``fraction`` of a training file set aside for validation, and the rest.

    Hungarian and Turkish have no validation file of their own; their held-out part lets the
    fine-tune choose its epoch without touching a dev or test file.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.texts))
    cut = round(len(order) * fraction)
    held, kept = np.sort(order[:cut]), np.sort(order[cut:])

    def part(idx: np.ndarray, name: str) -> LabelledSet:
        return LabelledSet(name=name, texts=[data.texts[i] for i in idx], labels=data.labels[idx])

    return part(kept, data.name), part(held, f"{data.name}[held-out]")


def embed_cached(encoder: Encoder, texts: Sequence[str], *, cache_dir: Path, tag: str) -> np.ndarray:
    """Embed texts, caching the result by content so re-training with new settings is quick."""
    digest = hashlib.sha256()
    digest.update(f"{tag}\0{encoder.prefix}\0{encoder.max_length}\0".encode())
    for text in texts:
        digest.update(text.encode("utf-8", "replace") + b"\0")
    path = cache_dir / f"{digest.hexdigest()[:32]}.npy"
    if path.exists():
        return np.asarray(np.load(path))
    x = encoder.embed(texts)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, x)
    tmp.replace(path)
    return x


def fit_head(
    x: np.ndarray, y: np.ndarray, *, hidden: int, weight_decay: float, epochs: int = 30, seed: int = 0
) -> Head:
    """Train a softmax head with class-balanced cross-entropy (macro-recall is the target metric)."""
    import torch

    torch.manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    counts = torch.bincount(yt, minlength=3).float()
    weights = torch.where(counts > 0, counts.sum() / (3 * counts.clamp(min=1)), torch.zeros(3))
    layers: list[torch.nn.Module] = []
    if hidden:
        layers += [torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(), torch.nn.Dropout(0.1)]
    layers.append(torch.nn.Linear(hidden or x.shape[1], 3))
    net = torch.nn.Sequential(*layers)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    gen = torch.Generator().manual_seed(seed)
    for _ in progress(range(epochs), desc=f"training head h={hidden} wd={weight_decay}", unit="epoch"):
        net.train()
        for idx in torch.randperm(len(yt), generator=gen).split(256):
            opt.zero_grad()
            loss_fn(net(xt[idx]), yt[idx]).backward()
            opt.step()
    params = [p.detach().numpy().copy() for p in net.parameters()]
    if hidden:
        return Head(w1=params[0], b1=params[1], w2=params[2], b2=params[3])
    return Head(w2=params[0], b2=params[1])


def predict_labels(head: Head, x: np.ndarray, *, classes: Sequence[int] = (0, 1, 2)) -> np.ndarray:
    """Arg-max over ``classes`` only (binary files are judged on negative vs positive)."""
    probs = head.probabilities(x)[:, list(classes)]
    return np.asarray(classes)[probs.argmax(axis=1)]  # type: ignore[no-any-return]


def score_on(head: Head, x: np.ndarray, y: np.ndarray) -> float:
    """Macro-recall of ``head`` on one labelled set, restricted to the classes it contains."""
    classes = sorted(set(y.tolist()))
    pred = predict_labels(head, x, classes=classes)
    return evaluate([LABELS[i] for i in y], [LABELS[i] for i in pred]).macro_recall


@dataclass(frozen=True)
class TrainSettings:
    """What ``train-sentiment`` searches over and how much English it samples."""

    hidden_sizes: tuple[int, ...] = (0, 256, 512)
    weight_decays: tuple[float, ...] = (1e-4, 1e-2)
    english_limit: int | None = None
    epochs: int = 30
    seed: int = 13


def train_sentiment(
    encoder: Encoder,
    *,
    train_files: Sequence[Path],
    val_files: Sequence[Path],
    cache_dir: Path,
    encoder_tag: str,
    settings: TrainSettings = TrainSettings(),
) -> tuple[Head, dict[str, float]]:
    """Embed the files, grid-search the head on the validation files, refit and return it."""
    xs, ys = [], []
    for path in train_files:
        limit = settings.english_limit if path.name.startswith("en_tweets") else None
        data = read_labelled(path, limit=limit, seed=settings.seed)
        log.info("embedding %s (%d rows)", path.name, len(data.texts))
        xs.append(embed_cached(encoder, data.texts, cache_dir=cache_dir, tag=encoder_tag))
        ys.append(data.labels)
    x, y = np.concatenate(xs), np.concatenate(ys)
    vals = []
    for path in val_files:
        data = read_labelled(path)
        vals.append((data.name, embed_cached(encoder, data.texts, cache_dir=cache_dir, tag=encoder_tag), data.labels))
    candidates = []
    for hidden in settings.hidden_sizes:
        for wd in settings.weight_decays:
            head = fit_head(x, y, hidden=hidden, weight_decay=wd, epochs=settings.epochs, seed=settings.seed)
            per_file = {name: score_on(head, xv, yv) for name, xv, yv in vals}
            mean = float(np.mean(list(per_file.values())))
            log.info("hidden=%d weight_decay=%g: mean validation macro-recall %.4f", hidden, wd, mean)
            candidates.append((mean, hidden, wd, head, per_file))
    _, hidden, wd, head, per_file = max(candidates, key=lambda c: c[0])
    meta = {
        "encoder": encoder_tag,
        "trained_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "train_files": [p.name for p in train_files],
        "train_rows": len(y),
        "val_files": [p.name for p in val_files],
        "hidden": hidden,
        "weight_decay": wd,
        "validation_macro_recall": per_file,
    }
    return Head(w1=head.w1, b1=head.b1, w2=head.w2, b2=head.b2, meta=meta), per_file
