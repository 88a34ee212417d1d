"""The i;unicode-casemap collation (mailcore.mailstore.casemap, RFC 5051 §2): titlecase,
then canonical decomposition, compared as octets."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mailcore.mailstore.casemap import casemap

_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def test_letters_beyond_ascii_fold_and_decompose() -> None:
    assert casemap("ä") == casemap("Ä") == casemap("A\u0308") == "A\u0308"
    assert casemap("Ärger") == casemap("äRGER") == "A\u0308RGER"
    assert casemap("ǆ") == casemap("Ǆ") == casemap("ǅ") == "ǅ"  # titlecase, not upper
    assert casemap("σ") == casemap("ς") == casemap("Σ")
    assert casemap("\u212a") == "K"  # KELVIN SIGN: a canonical singleton
    # ß has no simple titlecase (its full one, "Ss", is not used); ẞ lower-cases to ß
    # but neither titlecases to the other
    assert casemap("ß") == "ß" != casemap("ss")
    assert casemap("ẞ") != casemap("ß")
    assert casemap("한") == "한"  # Hangul syllables are not decomposed
    assert casemap("ﬁ") == "ﬁ"  # the ligature's titlecase "Fi" is a full mapping


def test_accented_letters_sort_with_their_base_letter() -> None:
    words = ["Zebra", "ärger", "Apfel", "Äpfel", "ßuppe", "Bär"]
    assert sorted(words, key=casemap) == ["Apfel", "Äpfel", "ärger", "Bär", "Zebra", "ßuppe"]


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=30))
def test_ascii_is_upper_cased(text: str) -> None:
    assert casemap(text) == text.translate(_ASCII_UPPER)


@given(st.text(max_size=20))
def test_an_ascii_casemap_key_maps_to_the_key_of_its_text(text: str) -> None:
    # what the index upgrade (migrate 5 -> 6) relies on
    assert casemap(text.translate(_ASCII_UPPER)) == casemap(text)
    assert casemap(text.swapcase()) == casemap(text) or not text.isascii()
