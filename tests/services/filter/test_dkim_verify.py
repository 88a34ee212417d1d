"""DKIM verification with real signatures (dkimpy, a generated key) and a lookup table in
place of DNS; then through SMTP into Authentication-Results."""

from __future__ import annotations

import base64
import functools

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailcore.bus.connect import Bus
from services.filter.dkim_verify import DkimResult, DkimVerifier, DnsTrouble, verify
from services.filter.headers import authentication_results
from tests.services.filter.conftest import ALICE, Accounts, RawClient, StartFilter, stream_messages

MESSAGE = (
    b"From: Carol <carol@signer.test>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: signed\r\n"
    b"\r\n"
    b"This message is signed.\r\n"
)


@functools.cache
def keys() -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode()


def signed(message: bytes = MESSAGE, selector: bytes = b"sel") -> bytes:
    private, _ = keys()
    field = dkim.sign(
        message, selector, b"signer.test", private, include_headers=[b"from", b"to", b"subject"]
    )
    return field + message


def table() -> dict[str, str]:
    return {"sel._domainkey.signer.test": keys()[1]}


def test_pass() -> None:
    [result] = verify(signed(), table().get)
    assert (result.result, result.domain, result.selector) == ("pass", "signer.test", "sel")
    assert len(result.signature) == 8


def test_altered_body_fails() -> None:
    [result] = verify(signed().replace(b"is signed", b"is forged"), table().get)
    assert result.result == "fail"


def test_missing_key_is_permerror_and_dns_trouble_temperror() -> None:
    assert verify(signed(selector=b"gone"), table().get)[0].result == "permerror"

    def broken(name: str) -> str | None:
        raise DnsTrouble("SERVFAIL")

    assert verify(signed(), broken)[0].result == "temperror"


def test_unsigned_and_malformed() -> None:
    assert verify(MESSAGE, table().get) == []
    assert verify(b"DKIM-Signature: v=1; nonsense\r\n" + MESSAGE, table().get)[0].result == (
        "neutral"
    )


async def test_verifier_skips_unsigned_mail_without_a_thread() -> None:
    def never(name: str) -> str | None:
        raise AssertionError("no lookup for unsigned mail")

    assert await DkimVerifier(never, 5).check(MESSAGE) == []


def test_rendering() -> None:
    result = DkimResult("pass", "signer.test", "sel", "abcdefgh")
    _, value = authentication_results("mx.example.test", None, [result.render()])
    assert value == (
        "mx.example.test;\r\n\tdkim=pass header.d=signer.test header.s=sel header.b=abcdefgh"
    )


@pytest.mark.parametrize(("body", "expected"), [(b"", "pass"), (b"tamper", "fail")])
async def test_through_smtp(
    start_filter: StartFilter, accounts: Accounts, bus: Bus, body: bytes, expected: str
) -> None:
    node = await start_filter(dkim_verify=True, dkim_lookup=table().get)
    message = signed()
    if body:
        message = message.replace(b"This message", b"This " + body + b" message")
    client = await RawClient.connect(node.settings.smtp_port)
    await client.expect("EHLO signer.test", 250)
    await client.expect("MAIL FROM:<carol@signer.test>", 250)
    await client.expect(f"RCPT TO:<{ALICE}>", 250)
    assert (await client.send_message(message)).startswith("250 ")
    [msg] = await stream_messages(bus)
    head = msg.body[: -len(message)].decode()
    line = f"Authentication-Results: mx.example.test;\r\n\tdkim={expected} header.d=signer.test"
    assert line in head
