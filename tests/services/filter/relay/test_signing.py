"""DKIM: ``mailctl domain dkim`` makes the key and prints the TXT record; the relay signs
outbound mail with it; dkimpy verifies the signature against the printed record."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import dkim

from tests.services.filter.relay.conftest import LOCAL, REMOTE, RelayEnv, eventually, message

MAILCTL = [sys.executable, "-c", "from services.cli import main; main()"]


def _mailctl(url: str, *args: str) -> str:
    proc = subprocess.run(
        [*MAILCTL, *args, "--nats", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parents[4],
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _txt(output: str) -> tuple[str, str]:
    """The record name and its value (the quoted strings joined, as DNS does)."""
    line = next(ln for ln in output.splitlines() if " IN TXT " in ln)
    name = line.split()[0]
    return name, "".join(re.findall(r'"([^"]*)"', line))


async def test_relay_signs_and_dkimpy_verifies_against_the_printed_key(
    relay_env: RelayEnv,
) -> None:
    env = relay_env
    out = await asyncio.to_thread(_mailctl, env.url, "domain", "dkim", LOCAL)
    name, value = _txt(out)
    assert name == f"postern._domainkey.{LOCAL}."
    assert value.startswith("v=DKIM1; k=rsa; p=")
    # Asked again: the same key (no silent rotation).
    again = await asyncio.to_thread(_mailctl, env.url, "domain", "dkim", LOCAL)
    assert _txt(again) == (name, value)

    await env.directory.add_domain("nokey.test")
    sink = env.sink()
    await env.start_relay({REMOTE: sink.address})
    await env.submit([f"bob@{REMOTE}"])
    await env.submit(
        [f"bob@{REMOTE}"], message(sender="carol@nokey.test"), sender="carol@nokey.test"
    )
    await eventually(lambda: len(sink.messages) == 2)
    signed = next(m.data for m in sink.messages if b"carol@" not in m.data)
    unsigned = next(m.data for m in sink.messages if b"carol@" in m.data)
    assert signed.startswith(b"DKIM-Signature:")
    assert b"DKIM-Signature" not in unsigned

    asked: list[bytes] = []

    def dnsfunc(qname: bytes, timeout: int = 5) -> bytes:
        asked.append(qname)
        return value.encode() if qname.decode().rstrip(".") == name.rstrip(".") else b""

    assert dkim.verify(signed, dnsfunc=dnsfunc)
    assert asked  # the key came from the printed record
    # A changed body no longer verifies: the signature covers it.
    assert not dkim.verify(signed.replace(b"Hello from", b"Hullo from"), dnsfunc=dnsfunc)


async def test_dkim_refuses_a_domain_that_is_not_local(relay_env: RelayEnv) -> None:
    proc = await asyncio.to_thread(
        subprocess.run,
        [*MAILCTL, "domain", "dkim", "elsewhere.example", "--nats", relay_env.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1 and "no local domain" in proc.stderr
