"""The sentiment head: a small classifier on top of frozen sentence embeddings."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kulak.errors import ModelError


@dataclass(frozen=True)
class Head:
    """A one-hidden-layer (or linear, when ``w1`` is None) softmax classifier.

    Classes are ordered (negative, neutral, positive). ``meta`` records how it was trained.
    """

    w2: np.ndarray
    b2: np.ndarray
    w1: np.ndarray | None = None
    b1: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def input_dim(self) -> int:
        """Embedding size the head expects."""
        return int((self.w1 if self.w1 is not None else self.w2).shape[1])

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """``(n, 3)`` class probabilities for ``(n, input_dim)`` embeddings."""
        h = x.astype(np.float32)
        if self.w1 is not None and self.b1 is not None:
            h = np.maximum(h @ self.w1.T + self.b1, 0.0)
        logits = h @ self.w2.T + self.b2
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return np.asarray(e / e.sum(axis=1, keepdims=True))

    def save(self, path: Path) -> None:
        """Write the head as a compressed ``.npz`` (weights stored as float16)."""
        arrays = {"w2": self.w2, "b2": self.b2}
        if self.w1 is not None and self.b1 is not None:
            arrays |= {"w1": self.w1, "b1": self.b1}
        path.parent.mkdir(parents=True, exist_ok=True)
        payload: dict[str, Any] = {k: v.astype(np.float16) for k, v in arrays.items()}
        payload["meta"] = np.array(json.dumps(self.meta, sort_keys=True))
        with path.open("wb") as fh:
            np.savez_compressed(fh, **payload)

    @classmethod
    def load(cls, path: Path) -> Head:
        """Read a head written by :meth:`save`."""
        try:
            with np.load(path) as z:
                get = {k: z[k].astype(np.float32) for k in z.files if k != "meta"}
                meta = json.loads(str(z["meta"]))
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"Cannot read sentiment head {path}: {exc}. Retrain with kulak train-sentiment.") from exc
        return cls(w2=get["w2"], b2=get["b2"], w1=get.get("w1"), b1=get.get("b1"), meta=meta)
