"""The auth requests' payloads (mailcore/bus/authrpc.py): golden version 1, round trips,
and anything that is not an answer read as "temporary", never as "wrong password"."""

from __future__ import annotations

import pytest

from mailcore.bus.authrpc import (
    TEMPORARY,
    AuthAnswer,
    AuthRequest,
    BadRequest,
    Result,
    decode_answer,
    decode_request,
    encode_answer,
    encode_request,
)

VERIFY_V1 = b'{"v":1,"user":"alice@example.com","password":"correct horse"}'
CHANGE_V1 = b'{"v":1,"user":"alice@example.com","password":"old one","new":"new one"}'
OK_V1 = b'{"v":1,"result":"ok","address":"alice@example.com"}'
INVALID_V1 = (
    b'{"v":1,"result":"invalid","address":"a@example.com",'
    b'"detail":"a password needs at least 8 characters"}'
)


def test_golden_requests() -> None:
    verify = AuthRequest("alice@example.com", "correct horse")
    change = AuthRequest("alice@example.com", "old one", "new one")
    assert encode_request(verify) == VERIFY_V1 and decode_request(VERIFY_V1) == verify
    assert encode_request(change) == CHANGE_V1 and decode_request(CHANGE_V1) == change


def test_golden_answers() -> None:
    ok = AuthAnswer(Result.OK, "alice@example.com")
    invalid = AuthAnswer(Result.INVALID, "a@example.com", "a password needs at least 8 characters")
    assert encode_answer(ok) == OK_V1 and decode_answer(OK_V1) == ok
    assert encode_answer(invalid) == INVALID_V1 and decode_answer(INVALID_V1) == invalid
    assert encode_answer(AuthAnswer(Result.FAIL)) == b'{"v":1,"result":"fail"}'
    assert decode_answer(b'{"v":1,"result":"temporary"}') == TEMPORARY


@pytest.mark.parametrize(
    "payload",
    [b"", b"{", b"[]", b'{"v":2,"result":"ok"}', b'{"v":1,"result":"maybe"}', b'{"v":1}'],
)
def test_what_is_not_an_answer_is_temporary(payload: bytes) -> None:
    assert decode_answer(payload) == TEMPORARY


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"null",
        b'{"v":2,"user":"a","password":"b"}',
        b'{"v":1,"user":"a"}',
        b'{"v":1,"user":1,"password":"b"}',
        b'{"v":1,"user":"a","password":"b","new":5}',
    ],
)
def test_bad_requests_are_refused(payload: bytes) -> None:
    with pytest.raises(BadRequest):
        decode_request(payload)
