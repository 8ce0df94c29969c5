"""Language detection for short social posts, with lingua (offline, maintained, good on short text)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from kulak.errors import ModelError

DEFAULT_LANGUAGES = ("en", "tr", "hu", "de", "fr", "es", "it", "pt", "nl", "ar", "ru", "hi")

# Handles, hashtags, links and e-mail addresses say nothing about the language and mislead
# n-gram models on short posts, so they are removed before detection.
_NOISE = re.compile(r"(?:https?://\S+|www\.\S+|\S+@\S+|[@#][\w.]+)")
_MIN_LETTERS = 8  # below this, a guess is noise: the language is left unknown


def _clean(text: str) -> str:
    return " ".join(_NOISE.sub(" ", text).split())


@lru_cache(maxsize=4)
def _detector(languages: tuple[str, ...]) -> Any:
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    try:
        codes = [getattr(IsoCode639_1, code.upper()) for code in languages]
    except AttributeError as exc:
        raise ModelError(f"Unknown ISO 639-1 language code in {list(languages)}: {exc}.") from None
    if len(codes) < 2:
        raise ModelError("Language detection needs at least two candidate languages.")
    return LanguageDetectorBuilder.from_iso_codes_639_1(*codes).with_minimum_relative_distance(0.1).build()


class LanguageDetector:
    """Detects ISO 639-1 codes among ``languages``; None when the text is too short or ambiguous.

    The lingua models are loaded on first use (a few seconds, ~40 MB per language) and shared.
    """

    def __init__(self, languages: Sequence[str] = DEFAULT_LANGUAGES) -> None:
        self.languages = tuple(code.lower() for code in languages)

    def detect(self, texts: Sequence[str]) -> list[str | None]:
        """One code (or None) per text, in order."""
        cleaned = [_clean(t) for t in texts]
        todo = [i for i, t in enumerate(cleaned) if sum(ch.isalpha() for ch in t) >= _MIN_LETTERS]
        out: list[str | None] = [None] * len(texts)
        if not todo:
            return out
        found = _detector(self.languages).detect_languages_in_parallel_of([cleaned[i] for i in todo])
        for i, language in zip(todo, found, strict=True):
            out[i] = language.iso_code_639_1.name.lower() if language is not None else None
        return out
