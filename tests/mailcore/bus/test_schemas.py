"""Versioned bus schemas: golden payloads per version, round trips, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailcore.bus.schemas import (
    ClientInfo,
    MailMessage,
    ScanResult,
    SchemaError,
    decode_mail,
    encode_mail,
    new_message_id,
)

GOLDEN = Path(__file__).parent / "golden"

GOLDEN_V1 = MailMessage(
    id="01JZ0000000000000000000000",
    mail_from="sender@example.org",
    recipients=["alice@example.com", "bob+news@example.com"],
    size=55,
    received_at=1795000000.25,
    client=ClientInfo(ip="192.0.2.7", helo="mx.example.org", auth_user=None, tls=True),
    scan=ScanResult(spam_score=6.5, spam_tagged=True, spam_scanned=True, virus_scanned=True),
    body=b"Subject: golden\r\nFrom: sender@example.org\r\n\r\nHello.\r\n\r\n",
)


def test_golden_v1_decodes() -> None:
    payload = (GOLDEN / "mail_v1.bin").read_bytes()
    assert decode_mail(payload) == GOLDEN_V1


def test_golden_v1_encodes_identically() -> None:
    assert encode_mail(GOLDEN_V1) == (GOLDEN / "mail_v1.bin").read_bytes()


def test_golden_v1_claim_checked() -> None:
    payload = (GOLDEN / "mail_v1_ref.bin").read_bytes()
    msg = decode_mail(payload)
    assert msg.body == b""
    assert msg.body_ref == "mail.inbound.01JZ0000000000000000000001"
    assert msg.size == 600_000


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"no newline",
        b"[1,2]\n",
        b'{"v":2,"id":"x"}\n',
        b'{"v":1}\n',
        b'{"v":1,"id":"x","mail_from":"","recipients":[],"size":0,"received_at":1}\n',
        b'{"v":1,"id":"x","mail_from":"","recipients":["a@b.c"],"size":9,"received_at":1}\nab',
        b"\xff\xfe\n",
    ],
)
def test_refuses_what_it_cannot_read(payload: bytes) -> None:
    with pytest.raises(SchemaError):
        decode_mail(payload)


@given(
    recipients=st.lists(st.emails(), min_size=1, max_size=5),
    body=st.binary(max_size=2000),
    mail_from=st.one_of(st.just(""), st.emails()),
    score=st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
)
def test_round_trip(
    recipients: list[str], body: bytes, mail_from: str, score: float | None
) -> None:
    msg = MailMessage(
        id=new_message_id(),
        mail_from=mail_from,
        recipients=recipients,
        size=len(body),
        body=body,
        scan=ScanResult(spam_score=score),
    )
    assert decode_mail(encode_mail(msg)) == msg


@given(st.binary(max_size=300))
def test_decoder_raises_only_schema_errors(payload: bytes) -> None:
    try:
        decode_mail(payload)
    except SchemaError:
        pass


def test_ids_are_unique_and_ordered() -> None:
    ids = [new_message_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 26 for i in ids)
    assert ids[0][:10] <= ids[-1][:10]
