from __future__ import annotations

import pytest

from listener.brands import Brand, BrandMatcher, fold

BRANDS = (
    Brand("Paketto", aliases=("Paketto Kargo",), handles=("@paketto",)),
    Brand("İzmir Kargo", aliases=("Izmir Cargo",)),
    Brand("Győri Keksz", handles=("gyorikeksz",)),
    Brand("Vantro", competitor=True),
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # case and word boundaries
        ("PAKETTO lost my parcel", ("Paketto",)),
        ("paketto'ya söyledim ama", ("Paketto",)),  # Turkish suffix after an apostrophe
        ("Pakettolar hep geç", ()),  # inside a longer word: not a mention
        ("ask @paketto about it", ("Paketto",)),
        ("email me at x@paketto.example", ()),  # an e-mail address is not a mention
        # Turkish dotted/dotless i in every combination
        ("İZMİR KARGO rezalet", ("İzmir Kargo",)),
        ("izmir kargo geldi", ("İzmir Kargo",)),
        ("IZMIR KARGO geldi", ("İzmir Kargo",)),
        ("ızmır kargo geldi", ("İzmir Kargo",)),
        ("İzmir Cargo is late", ("İzmir Kargo",)),
        # Hungarian accents (ő, ö, í, é) in either direction
        ("A Győri Keksz finom", ("Győri Keksz",)),
        ("a gyori keksz finom", ("Győri Keksz",)),
        ("GYŐRI KEKSZ!!!", ("Győri Keksz",)),
        ("köszi @gyorikeksz", ("Győri Keksz",)),
        # several brands in one post, none in another
        ("Switched from Vantro to Paketto", ("Paketto", "Vantro")),
        ("nothing to see here", ()),
    ],
)
def test_brand_matcher__matches_case_accent_and_turkish_i_insensitively(text: str, expected: tuple[str, ...]) -> None:
    assert BrandMatcher(BRANDS).match(text) == expected


@pytest.mark.parametrize(
    ("a", "b"),
    [("İstanbul", "istanbul"), ("ISTANBUL", "ıstanbul"), ("Győr", "gyor"), ("ŞÇĞÜÖ", "scguo"), ("Ő", "o")],
)
def test_fold__equates_spellings(a: str, b: str) -> None:
    assert fold(a) == fold(b)
