from hypothesis import given
from hypothesis import strategies as st

from services.webmail import mutf7


def test_known_values() -> None:
    # RFC 3501 §5.1.3's example
    assert mutf7.encode("~peter/mail/台北/日本語") == "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
    assert mutf7.decode("~peter/mail/&U,BTFw-/&ZeVnLIqe-") == "~peter/mail/台北/日本語"
    assert mutf7.encode("A&B") == "A&-B"
    assert mutf7.decode("A&-B") == "A&B"


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30))
def test_round_trip(name: str) -> None:
    assert mutf7.decode(mutf7.encode(name)) == name
