"""Matching posts to brands: case-, accent- and Turkish-i-insensitive, on word boundaries."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

# Turkish has a dotted and a dotless i in both cases; fold all four to a plain "i" before
# casefolding so "İSTANBUL", "istanbul" and "ıstanbul" all compare equal.
_TURKISH_I = str.maketrans({"İ": "i", "I": "i", "ı": "i"})


def fold(text: str) -> str:
    """Case-, accent- and Turkish-i-insensitive form of ``text`` (same length not guaranteed)."""
    text = text.translate(_TURKISH_I).casefold()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).translate(_TURKISH_I)


@dataclass(frozen=True)
class Brand:
    """A brand to listen for: its aliases and social handles (``@name``)."""

    name: str
    aliases: tuple[str, ...] = ()
    handles: tuple[str, ...] = ()
    competitor: bool = False

    def terms(self) -> tuple[str, ...]:
        """Every string that counts as a mention: the name, aliases, handles with and without @."""
        handles = tuple(h if h.startswith("@") else "@" + h for h in self.handles)
        return (self.name, *self.aliases, *handles)


class BrandMatcher:
    """Finds which brands a text mentions. Build once, call :meth:`match` per post."""

    def __init__(self, brands: Iterable[Brand]) -> None:
        self.brands = tuple(brands)
        self._patterns = [(brand.name, self._compile(brand)) for brand in self.brands]

    @staticmethod
    def _compile(brand: Brand) -> re.Pattern[str]:
        terms = sorted({fold(t) for t in brand.terms() if t.strip()}, key=len, reverse=True)
        alternatives = "|".join(re.escape(t) for t in terms)
        # (?<!\w) and (?!\w) are word boundaries that also work for terms starting with "@".
        return re.compile(rf"(?<![\w@])(?:{alternatives})(?!\w)")

    def match(self, text: str) -> tuple[str, ...]:
        """Names of the brands ``text`` mentions, in configuration order."""
        folded = fold(text)
        return tuple(name for name, pattern in self._patterns if pattern.search(folded))
