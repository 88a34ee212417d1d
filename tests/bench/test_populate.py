"""Filling a Dovecot maildir directly (bench.loadgen.populate.maildir_write): the files
Dovecot's LMTP would leave, under names that carry their sizes."""

from __future__ import annotations

import re
from pathlib import Path

from bench.corpus import message
from bench.loadgen.populate import maildir_write


def test_messages_are_written_as_lmtp_leaves_them(tmp_path: Path) -> None:
    box = tmp_path / "Maildir"
    total = maildir_write(box, "sort@bench.test", 3, 2048, start=5)
    assert sorted(p.name for p in box.iterdir()) == ["cur", "new", "tmp"]
    files = sorted((box / "new").iterdir(), key=lambda p: p.name)
    assert len(files) == 3
    assert total == sum(p.stat().st_size for p in files)
    for i, path in zip((5, 6, 7), files, strict=True):
        data = path.read_bytes()
        m = re.fullmatch(r"\d+\.M(\d+)P\d+\.[^,/]+,S=(\d+),W=(\d+)", path.name)
        assert m is not None, path.name
        assert int(m.group(1)) == i
        assert int(m.group(2)) == len(data)
        assert b"\r" not in data  # maildir holds LF line ends; W= is the CRLF size
        assert int(m.group(3)) == len(data) + data.count(b"\n")
        head, _, rest = data.partition(b"\n\t(envelope-from <sender@example.org>)\n")
        assert head.startswith(b"Return-Path: <sender@example.org>\nDelivered-To: sort@bench")
        body = rest.split(b"\n", 1)[1]  # after the Received field's last line
        assert body == message(i, 2048, to="sort@bench.test").replace(b"\r\n", b"\n")
