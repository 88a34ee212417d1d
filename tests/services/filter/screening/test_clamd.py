"""Our clamd INSTREAM client against a real clamd (EICAR signature only)."""

from __future__ import annotations

import pytest

from services.ctl.daemons import free_port
from services.filter.screening.clamd import ClamdClient, ClamdError, parse_reply
from tests.services.filter.samples import CLEAN, EICAR, with_attachment
from tests.support.daemons import Clamd


@pytest.fixture
def client(clamd: Clamd) -> ClamdClient:
    return ClamdClient(host=clamd.host, port=clamd.port)


async def test_clean_message(client: ClamdClient) -> None:
    result = await client.scan(CLEAN)
    assert not result.infected and result.signature is None


async def test_eicar_file(client: ClamdClient) -> None:
    result = await client.scan(EICAR)
    assert result.infected
    assert result.signature is not None and result.signature.startswith("Eicar-Test-Signature")


async def test_eicar_attachment_across_many_chunks(clamd: Clamd) -> None:
    # 300 KB of text before the attachment: the stream spans several 1 KiB chunks here,
    # and five 64 KiB chunks with the default size.
    padding = (b"x" * 70 + b"\r\n") * 4000
    message = with_attachment(EICAR).replace(b"Please see", padding + b"Please see")
    for chunk in (1024, 64 * 1024):
        client = ClamdClient(host=clamd.host, port=clamd.port, chunk_size=chunk)
        assert (await client.scan(message)).infected


async def test_unix_socket(clamd: Clamd) -> None:
    client = ClamdClient(socket_path=clamd.socket_path)
    assert await client.ping()
    assert (await client.scan(with_attachment(EICAR))).infected
    assert not (await client.scan(CLEAN)).infected


async def test_nothing_listening_is_an_error() -> None:
    client = ClamdClient(host="127.0.0.1", port=free_port())
    with pytest.raises(ClamdError):
        await client.scan(CLEAN)
    assert not await client.ping()


def test_reply_parsing() -> None:
    assert parse_reply(b"stream: OK\0").signature is None
    assert parse_reply(b"stream: Win.Test.EICAR_HDB-1 FOUND\0").signature == (
        "Win.Test.EICAR_HDB-1"
    )
    with pytest.raises(ClamdError):
        parse_reply(b"INSTREAM size limit exceeded. ERROR\0")
    with pytest.raises(ClamdError):
        parse_reply(b"")


async def test_eicar_string_pasted_into_a_body(client: ClamdClient) -> None:
    # the hash signature matches only the exact 68-byte file; the body signature
    # (tests/data/clamav/eicar.ndb, written by mailctl up too) matches it anywhere
    message = b"Subject: test\r\n\r\nHere it is: " + EICAR.strip() + b" -- and more text\r\n"
    result = await client.scan(message)
    assert result.infected, result
