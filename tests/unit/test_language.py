from __future__ import annotations

import pytest

from kulak.errors import ModelError
from sentiment.language import LanguageDetector


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Paketto kargom 3 gündür gelmedi, rezalet!", "tr"),
        ("A csomagom megint elveszett, borzasztó.", "hu"),
        ("They lost my parcel again, third time this month", "en"),
        ("Le colis est arrivé en retard encore une fois", "fr"),
        ("@paketto 👍 https://x.com/a/status/1 #kargo", None),  # nothing but handles, links and emoji
        ("ok", None),  # too short to tell
    ],
)
def test_language_detector__short_posts(text: str, expected: str | None) -> None:
    assert LanguageDetector().detect([text]) == [expected]


def test_language_detector__unknown_code_is_a_clear_error() -> None:
    with pytest.raises(ModelError, match="Unknown ISO 639-1 language code"):
        LanguageDetector(["en", "xx"]).detect(["some longer english text here"])
