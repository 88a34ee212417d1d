"""Per-service NATS users on a real nats-server (mailcore.bus.permissions, issue 18):
what each service needs works under its own user; what it must not do is refused by the
server with a permissions violation; no credentials, a wrong password, and (with TLS
required) a plain connection are refused."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import ConsumerConfig

from mailcore.bus import names
from mailcore.bus.authrpc import AuthAnswer, AuthRequest, Result, ask
from mailcore.bus.claimcheck import drop_body, load_body, publish_mail
from mailcore.bus.credentials import client_tls
from mailcore.bus.schemas import MailMessage, decode_mail, new_message_id
from mailcore.bus.setup import declare_all
from mailcore.credentials import credential_key
from mailcore.directory import Directory
from services.ctl.natsauth import ensure_server_tls
from services.store.auth_rpc import AuthResponder
from tests.conftest import TEST_LIMITS
from tests.support.securenats import SecureNats, Violations, plain_session

Act = Callable[[Any], Awaitable[None]]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureNats]:
    s = SecureNats(tmp_path_factory.mktemp("securenats"))
    s.start()
    yield s
    s.stop()


@pytest.fixture
async def declared(server: SecureNats) -> AsyncIterator[SecureNats]:
    admin = await server.bus("mailctl")
    await declare_all(admin.js, TEST_LIMITS)
    yield server
    await admin.close()


def _request(subject: str, payload: bytes = b"") -> Act:
    async def act(nc: Any) -> None:
        # the server drops the refused publish and says so; the request itself times out
        try:
            await nc.request(subject, payload, timeout=0.5)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            pass

    return act


def _subscribe(subject: str) -> Act:
    async def act(nc: Any) -> None:
        await nc.subscribe(subject)
        await nc.flush()

    return act


def _publish(subject: str) -> Act:
    async def act(nc: Any) -> None:
        await nc.publish(subject, b"x")
        await nc.flush()

    return act


NEXT = "$JS.API.CONSUMER.MSG.NEXT"
FORBIDDEN: list[tuple[str, str, Act, str]] = [
    # (user, what it tries, the act, the subject the server names)
    ("filter", "read inbound mail", _subscribe("mail.inbound"), "mail.inbound"),
    (
        "filter",
        "pull the store's delivery consumer",
        _request(f"{NEXT}.MAIL_INBOUND.store-delivery", b'{"batch":1}'),
        f"{NEXT}.MAIL_INBOUND.store-delivery",
    ),
    (
        "filter",
        "make its own consumer on the inbound stream",
        _request("$JS.API.CONSUMER.CREATE.MAIL_INBOUND", b"{}"),
        "$JS.API.CONSUMER.CREATE.MAIL_INBOUND",
    ),
    (
        "filter",
        "ask the store for a mailbox (replica RPC)",
        _request(names.SUBJECT_REPLICA + "read", b"{}"),
        names.SUBJECT_REPLICA + "read",
    ),
    (
        "filter",
        "purge a user's mail",
        _request(names.SUBJECT_STORE_PURGE, b"{}"),
        names.SUBJECT_STORE_PURGE,
    ),
    ("filter", "read every reply", _subscribe("_INBOX.>"), "_INBOX.>"),
    ("filter", "read the store's replies", _subscribe("_INBOX_store.>"), "_INBOX_store.>"),
    (
        "filter",
        "read webmail sessions",
        _request("$JS.API.DIRECT.GET.KV_SESSIONS.$KV.SESSIONS.s.x"),
        "$JS.API.DIRECT.GET.KV_SESSIONS",
    ),
    ("filter", "change the directory", _publish("$KV.DIRECTORY.u.x"), "$KV.DIRECTORY.u.x"),
    (
        "filter",
        "read a claim-checked body",
        _request("$JS.API.CONSUMER.CREATE.OBJ_MAIL_BODIES", b"{}"),
        "$JS.API.CONSUMER.CREATE.OBJ_MAIL_BODIES",
    ),
    (
        "filter",
        "read a claim-checked body by sequence",
        _request("$JS.API.STREAM.MSG.GET.OBJ_MAIL_BODIES", b'{"seq":1}'),
        "$JS.API.STREAM.MSG.GET.OBJ_MAIL_BODIES",
    ),
    (
        "filter",
        "purge the bodies",
        _request("$JS.API.STREAM.PURGE.OBJ_MAIL_BODIES", b"{}"),
        "$JS.API.STREAM.PURGE.OBJ_MAIL_BODIES",
    ),
    (
        "filter",
        "purge the inbound stream",
        _request("$JS.API.STREAM.PURGE.MAIL_INBOUND"),
        "$JS.API.STREAM.PURGE.MAIL_INBOUND",
    ),
    (
        "filter",
        "delete a stream",
        _request("$JS.API.STREAM.DELETE.MAIL_INBOUND"),
        "$JS.API.STREAM.DELETE.MAIL_INBOUND",
    ),
    (
        "filter",
        "change a stream",
        _request("$JS.API.STREAM.UPDATE.MAIL_INBOUND", b"{}"),
        "$JS.API.STREAM.UPDATE.MAIL_INBOUND",
    ),
    # the password hashes (CREDENTIALS): no way in for a filter, and no password of a
    # login another filter asks the store to check
    (
        "filter",
        "read a password hash (direct get)",
        _request("$JS.API.DIRECT.GET.KV_CREDENTIALS.$KV.CREDENTIALS.user.x"),
        "$JS.API.DIRECT.GET.KV_CREDENTIALS",
    ),
    (
        "filter",
        "read a password hash (message get)",
        _request("$JS.API.STREAM.MSG.GET.KV_CREDENTIALS", b'{"last_by_subj":"$KV.CREDENTIALS.>"}'),
        "$JS.API.STREAM.MSG.GET.KV_CREDENTIALS",
    ),
    (
        "filter",
        "watch the password hashes",
        _request("$JS.API.CONSUMER.CREATE.KV_CREDENTIALS", b"{}"),
        "$JS.API.CONSUMER.CREATE.KV_CREDENTIALS",
    ),
    (
        "filter",
        "read the hashes' subjects",
        _subscribe("$KV.CREDENTIALS.>"),
        "$KV.CREDENTIALS.>",
    ),
    ("filter", "write a password hash", _publish("$KV.CREDENTIALS.u.x"), "$KV.CREDENTIALS.u.x"),
    (
        "filter",
        "read other logins' passwords",
        _subscribe(names.SUBJECT_AUTH_VERIFY),
        names.SUBJECT_AUTH_VERIFY,
    ),
    (
        "filter",
        "change a password",
        _request(names.SUBJECT_AUTH_PASSWORD, b"{}"),
        names.SUBJECT_AUTH_PASSWORD,
    ),
    (
        "relay",
        "read a password hash",
        _request("$JS.API.STREAM.MSG.GET.KV_CREDENTIALS", b'{"last_by_subj":"$KV.CREDENTIALS.>"}'),
        "$JS.API.STREAM.MSG.GET.KV_CREDENTIALS",
    ),
    (
        "webmail",
        "read a password hash",
        _request("$JS.API.DIRECT.GET.KV_CREDENTIALS.$KV.CREDENTIALS.user.x"),
        "$JS.API.DIRECT.GET.KV_CREDENTIALS",
    ),
    (
        "webmail",
        "read other logins' passwords",
        _subscribe(names.SUBJECT_AUTH_VERIFY),
        names.SUBJECT_AUTH_VERIFY,
    ),
    ("webmail", "inject mail", _publish("mail.inbound"), "mail.inbound"),
    ("webmail", "read the directory", _subscribe("$KV.DIRECTORY.>"), "$KV.DIRECTORY.>"),
    (
        "relay",
        "pull inbound mail",
        _request(f"{NEXT}.MAIL_INBOUND.store-delivery", b'{"batch":1}'),
        f"{NEXT}.MAIL_INBOUND.store-delivery",
    ),
    (
        "relay",
        "ask the store for a mailbox",
        _request(names.SUBJECT_REPLICA + "accounts", b"{}"),
        names.SUBJECT_REPLICA + "accounts",
    ),
    ("store", "change the directory", _publish("$KV.DIRECTORY.u.x"), "$KV.DIRECTORY.u.x"),
    (
        "store",
        "pull outbound mail",
        _request(f"{NEXT}.MAIL_OUTBOUND.relay", b'{"batch":1}'),
        f"{NEXT}.MAIL_OUTBOUND.relay",
    ),
    # (the mirror may publish and pull inbound mail: the master's mirror hands the slave
    # side's inbound mail over to its own store, services/mirror/handoff.py)
    (
        "mirror",
        "pull outbound mail",
        _request(f"{NEXT}.MAIL_OUTBOUND.relay", b'{"batch":1}'),
        f"{NEXT}.MAIL_OUTBOUND.relay",
    ),
    ("mirror", "read sessions", _subscribe("$KV.SESSIONS.>"), "$KV.SESSIONS.>"),
]


@pytest.mark.parametrize(
    ("user", "what", "act", "subject"), FORBIDDEN, ids=[f"{u}: {w}" for u, w, _, _ in FORBIDDEN]
)
async def test_forbidden_acts_are_refused(
    declared: SecureNats, user: str, what: str, act: Act, subject: str
) -> None:
    client = await Violations().connect(declared, user)
    try:
        await act(client.nc)
        error = await client.next_violation()
        assert "permissions violation" in error
        assert subject.lower() in error
        assert client.nc.is_connected  # a violation refuses the act, not the connection
    finally:
        await client.close()


async def test_each_service_does_its_own_work(declared: SecureNats) -> None:
    """The filter hands off and reads the directory, the store pulls and acks the inbound
    mail, the relay pulls outbound mail, the webmail keeps sessions: each as its user."""
    admin = await declared.bus("mailctl")
    filt = await declared.bus("filter")
    store = await declared.bus("store")
    relay = await declared.bus("relay")
    webmail = await declared.bus("webmail")
    try:
        directory = await admin.js.key_value(names.KV_DIRECTORY)
        await directory.put("domain.perm.test", b"{}")
        assert (await (await filt.js.key_value(names.KV_DIRECTORY)).get("domain.perm.test")).value
        for subject in (names.SUBJECT_INBOUND, names.SUBJECT_OUTBOUND):
            ack = await filt.js.publish(subject, b"mail for " + subject.encode())
            assert ack.seq > 0
        inbound = await store.js.pull_subscribe_bind(
            names.CONSUMER_DELIVERY, stream=names.STREAM_INBOUND
        )
        got = await inbound.fetch(1, timeout=10)
        assert got[0].data == b"mail for mail.inbound"
        await got[0].ack_sync()
        # a body above the inline threshold: the filter writes it, the store reads it
        big = b"Subject: big\r\n\r\n" + os.urandom(600 * 1024)
        msg = MailMessage(
            id=new_message_id(), mail_from="a@x.test", recipients=["b@y.test"], size=0
        )
        filter_bodies = await filt.js.object_store(names.OBJ_BODIES)
        await publish_mail(filt.js, filter_bodies, names.SUBJECT_INBOUND, msg, big, write_only=True)
        got = await inbound.fetch(1, timeout=10)
        received = decode_mail(got[0].data)
        assert received.body_ref is not None
        store_bodies = await store.js.object_store(names.OBJ_BODIES)
        assert await load_body(store_bodies, received) == big
        await drop_body(store_bodies, received)
        await got[0].ack_sync()
        outbound = await relay.js.pull_subscribe_bind(
            names.CONSUMER_RELAY, stream=names.STREAM_OUTBOUND
        )
        got = await outbound.fetch(1, timeout=10)
        assert got[0].data == b"mail for mail.outbound"
        await got[0].ack_sync()
        sessions = await webmail.js.key_value(names.KV_SESSIONS)
        await sessions.put("s.abc", json.dumps({"user": "a"}).encode())
        assert (await sessions.get("s.abc")).value
    finally:
        for b in (webmail, relay, store, filt, admin):
            await b.close()


async def test_the_administrator_may_make_consumers(declared: SecureNats) -> None:
    admin = await declared.bus("mailctl")
    try:
        info = await admin.js.add_consumer(
            names.STREAM_DEAD, ConsumerConfig(durable_name="perm-admin-check")
        )
        assert info.name == "perm-admin-check"
        await admin.js.delete_consumer(names.STREAM_DEAD, "perm-admin-check")
    finally:
        await admin.close()


async def _refused(server: SecureNats, **options: Any) -> str:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(f"{type(exc).__name__}: {exc}")

    with pytest.raises(Exception) as raised:
        await nats.connect(
            server.url, error_cb=on_error, allow_reconnect=False, connect_timeout=5, **options
        )
    return " ".join([*errors, f"{type(raised.value).__name__}: {raised.value}"]).lower()


async def test_no_credentials_and_wrong_password_are_refused(server: SecureNats) -> None:
    assert "authorization" in await _refused(server)
    assert "authorization" in await _refused(server, user="filter", password="guess")
    # one service's password is not another's
    assert "authorization" in await _refused(
        server, user="store", password=server.passwords["filter"]
    )


async def test_tls_required_refuses_plain_and_serves_tls(tmp_path: Path) -> None:
    server = SecureNats(tmp_path / "tlsnats", tls=True)
    server.start()
    try:
        info, answer = plain_session(server.host, server.port, "store", server.passwords["store"])
        assert info["tls_required"] is True
        assert b"PONG" not in answer
        # (the server closes: what it got was no TLS handshake; the same user over TLS below)
        bus = await server.bus("mailctl")
        try:
            await declare_all(bus.js, TEST_LIMITS)
            assert bus.connected  # plain is refused above: this connection is TLS
        finally:
            await bus.close()
        # a server certificate from another CA is not believed
        stranger = ensure_server_tls(tmp_path / "other-ca", ["localhost"])
        wrong = await _refused(
            server,
            user="store",
            password=server.passwords["store"],
            tls=client_tls(stranger.ca, None, None),
        )
        assert "certificate verify failed" in wrong
        store = await server.bus("store")
        try:
            stream = await store.js.stream_info(names.STREAM_INBOUND)
            assert stream.config.name == names.STREAM_INBOUND
        finally:
            await store.close()
    finally:
        server.stop()


async def test_only_the_store_and_the_mirror_read_the_password_hashes(declared: SecureNats) -> None:
    """Issue 18: a filter's credentials cannot read the password hashes. The filter user
    reads the directory (no hash in it) but its reads of CREDENTIALS, through nats-py's
    own KV API, are refused by the server; the store checks and writes passwords, the
    mirror reads the hashes to copy them to the peer store."""
    admin = await declared.bus("mailctl")
    store = await declared.bus("store")
    mirror = await declared.bus("mirror")
    filt = await Violations().connect(declared, "filter")
    try:
        setup = await Directory.open(admin.js, watch=False)
        if not setup.is_local_domain("perm.test"):
            await setup.add_domain("perm.test")
        if setup.user("hash@perm.test") is None:
            await setup.add_user("hash@perm.test", "hash-password")
        key = credential_key("hash@perm.test")
        # the store: checks and changes passwords
        checker = await Directory.open(store.js, watch=False, passwords=True)
        assert (await checker.authenticate("hash@perm.test", "hash-password")) is not None
        await checker.set_password("hash@perm.test", "hash-password")
        # the mirror: reads the hashes (mailcore/bus/mirror_directory.py)
        copied = await (await mirror.js.key_value(names.KV_CREDENTIALS)).get(key)
        assert b"argon2id" in (copied.value or b"")
        # the filter: the directory, without any hash, yes; the hashes, no
        js = filt.nc.jetstream(timeout=2)
        directory = await Directory.open(js, watch=False)
        user = directory.user("hash@perm.test")
        assert user is not None and user.password_hash == ""
        credentials = await js.key_value(names.KV_CREDENTIALS)  # (stream info: allowed)
        with pytest.raises(nats.errors.TimeoutError):
            await credentials.get(key)
        error = await filt.next_violation()
        assert "permissions violation" in error and "kv_credentials" in error
        with pytest.raises(nats.errors.TimeoutError):
            await Directory.open(js, watch=False, passwords=True)
        error = await filt.next_violation()
        assert "permissions violation" in error and "kv_credentials" in error
        assert filt.nc.is_connected
    finally:
        await filt.close()
        for b in (mirror, store, admin):
            await b.close()


async def test_the_store_answers_password_checks_and_changes(declared: SecureNats) -> None:
    """The store's auth responder under the ``store`` user: the filter user's SMTP AUTH
    check and the webmail user's password change (the webmail may not write the hashes
    itself), both answered, with no permissions violation on either side."""
    admin = await declared.bus("mailctl")
    store = await declared.bus("store")
    filt = await Violations().connect(declared, "filter")
    webmail = await Violations().connect(declared, "webmail")
    directory = await Directory.open(store.js, passwords=True)
    responder = AuthResponder(store, directory)
    await responder.start()
    try:
        setup = await Directory.open(admin.js, watch=False)
        if not setup.is_local_domain("perm.test"):
            await setup.add_domain("perm.test")
        if setup.user("rpc@perm.test") is None:
            await setup.add_user("rpc@perm.test", "first-password")
        else:
            await setup.set_password("rpc@perm.test", "first-password")

        async def verify(password: str) -> Result:
            req = AuthRequest("rpc@perm.test", password)
            return (await ask(filt.nc, names.SUBJECT_AUTH_VERIFY, req, 10)).result

        async def change(old: str, new: str) -> AuthAnswer:
            req = AuthRequest("rpc@perm.test", old, new)
            return await ask(webmail.nc, names.SUBJECT_AUTH_PASSWORD, req, 10)

        for _ in range(100):  # the responder's copy follows the buckets
            if await verify("first-password") is Result.OK:
                break
            await asyncio.sleep(0.05)
        assert await verify("first-password") is Result.OK
        assert await verify("wrong-password") is Result.FAIL
        assert (await change("wrong-password", "second-password")).result is Result.FAIL
        short = await change("first-password", "short")
        assert short.result is Result.INVALID and "8 characters" in short.detail
        assert (await change("first-password", "second-password")).result is Result.OK
        assert await verify("second-password") is Result.OK
        assert await verify("first-password") is Result.FAIL
        assert filt.errors == [] and webmail.errors == []
    finally:
        await responder.stop()
        await directory.close()
        await webmail.close()
        await filt.close()
        await store.close()
        await admin.close()
