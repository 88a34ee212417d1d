"""The reply catalogue: well-formed replies, and the one error-to-reply mapping."""

from __future__ import annotations

import re

from services.filter import errors
from services.filter.smtp import framing, replies
from services.filter.smtp.replies import Reply

CATALOGUE = {name: value for name, value in vars(replies).items() if isinstance(value, Reply)}


def test_every_reply_is_well_formed() -> None:
    assert len(CATALOGUE) > 40
    for name, reply in CATALOGUE.items():
        assert 200 <= reply.code < 600, name
        line = reply.line
        assert line.endswith(b"\r\n") and b"\r\n" not in line[:-2], name
        if reply.status:
            # RFC 3463: the enhanced code's class matches the reply's.
            assert re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", reply.status), name
            assert reply.status[0] == str(reply.code)[0], name


def test_internal_failures_are_never_5xx() -> None:
    for reply in (replies.INTERNAL, replies.BUS_UNAVAILABLE, replies.SCANNER_UNAVAILABLE):
        assert 400 <= reply.code < 500
    assert str(replies.INTERNAL) == "451 4.3.0 Internal error; try again later"


def test_every_domain_error_has_its_reply() -> None:
    for cls in errors.FilterError.__subclasses__():
        error = cls("x") if cls not in (errors.SpamRejected,) else cls(12.0)
        reply = replies.for_error(error)
        assert reply is not replies.INTERNAL, cls
        assert (400 <= reply.code < 500) == cls.temporary, cls


def test_issue_codes() -> None:
    assert str(replies.for_error(errors.RelayDenied("x"))).startswith("554 5.7.1")
    assert str(replies.for_error(errors.UnknownRecipient("x"))).startswith("550 5.1.1")
    assert str(replies.for_error(errors.SenderNotOwned("x"))).startswith("553 5.7.1")
    assert str(replies.for_error(errors.SpamRejected(11))).startswith("550 5.7.1")
    assert str(replies.for_error(errors.ScannerUnavailable("x"))).startswith("451 4.7.1")
    assert str(replies.for_error(errors.BusUnavailable("x"))).startswith("451 4.3.0")
    assert str(replies.for_error(errors.StorageFull("x"))).startswith("452 4.3.1")
    virus = replies.for_error(errors.VirusFound("Eicar-Test-Signature\r\n"))
    assert str(virus) == "554 5.7.1 Message rejected: virus found (Eicar-Test-Signature??)"


def test_data_problems_are_5xx() -> None:
    for problem in framing.DataProblem:
        assert 500 <= replies.for_data_problem(problem).code < 600


def test_multiline() -> None:
    assert replies.multiline(250, ["a", "b", "c"]) == b"250-a\r\n250-b\r\n250 c\r\n"
