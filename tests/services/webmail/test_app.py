"""The webmail app over HTTP (httpx in the same event loop), against the real store and
the real SESSIONS bucket: login, lists, reading, CSRF, cookies, throttling, sessions
shared between nodes and ended everywhere, header injection refused."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY

from mailcore.bus.connect import Bus
from mailcore.loginguard import LoginGuard
from tests.services.store.imap.conftest import ALICE, PASSWORD, ImapHarness, message
from tests.services.webmail.app_harness import csrf_of, login, node

HTML_MAIL = (
    b"From: Mallory <m@example.net>\r\nTo: alice@example.com\r\nSubject: html\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
    b"--B\r\nContent-Type: text/html\r\n\r\n"
    b'<p onclick="x()">Hi<script>alert(1)</script><img src="https://tracker.example/p.gif">'
    b'<img src="cid:logo@x"><a href="https://example.org/">link</a></p>\r\n'
    b"--B\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    b"iVBORw0KGgo=\r\n"
    b"--B\r\nContent-Type: text/html; name=evil.html\r\n"
    b"Content-Disposition: attachment; filename=evil.html\r\n\r\n"
    b"<script>alert(2)</script>\r\n--B--\r\n"
)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_login_cookies_and_inbox(bus: Bus, imap: ImapHarness, tmp_path: Path) -> None:
    await imap.deliver(message(1, subject="first"), message(2, subject="second"))
    n = await node(bus, imap, tmp_path)
    ok_before = metric("postern_webmail_logins_total", outcome="ok")
    async with n.client() as c:
        assert (await c.get("/mail")).status_code == 303  # not logged in
        bad = await login(c, password="wrong password")
        assert bad.status_code == 401 and "Wrong address or password" in bad.text
        r = await login(c)
        assert r.status_code == 303
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
        inbox = await c.get("/mail?f=INBOX")
        assert inbox.status_code == 200
        assert "first" in inbox.text and "second" in inbox.text
        assert "default-src 'none'" in inbox.headers["content-security-policy"]
        assert inbox.headers["x-content-type-options"] == "nosniff"
        by_subject = await c.get("/mail?f=INBOX&s=subject&o=asc")
        assert by_subject.text.index("first") < by_subject.text.index("second")
    assert metric("postern_webmail_logins_total", outcome="ok") == ok_before + 1
    assert metric("postern_webmail_page_seconds_count", route="/mail") >= 2
    assert metric("postern_webmail_imap_round_trips_count", route="/mail") >= 2


async def test_secure_cookie_over_https(bus: Bus, imap: ImapHarness, tmp_path: Path) -> None:
    n = await node(bus, imap, tmp_path)
    async with n.client("https://webmail.test") as c:
        r = await login(c)
        assert r.status_code == 303 and "Secure" in r.headers["set-cookie"]


async def test_reading_html_mail(bus: Bus, imap: ImapHarness, tmp_path: Path) -> None:
    [uid] = await imap.deliver(HTML_MAIL)
    n = await node(bus, imap, tmp_path)
    async with n.client() as c:
        await login(c)
        page = await c.get(f"/read?f=INBOX&uid={uid}")
        assert page.status_code == 200
        assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in page.text
        assert "Remote images in this message are blocked" in page.text
        assert "evil.html" in page.text
        body = await c.get(f"/body?f=INBOX&uid={uid}")
        csp = body.headers["content-security-policy"]
        assert "img-src data:;" in csp and "sandbox" in csp and "script" not in csp
        assert "<script" not in body.text and "onclick" not in body.text
        assert "tracker.example" not in body.text
        assert 'src="data:image/png;base64,iVBORw0KGgo="' in body.text
        assert 'rel="noopener noreferrer"' in body.text
        shown = await c.get(f"/body?f=INBOX&uid={uid}&images=1")
        assert "tracker.example" in shown.text
        assert "https:" in shown.headers["content-security-policy"]
        # reading marked it read
        assert "unread" not in (await c.get("/mail?f=INBOX&fragment=rows")).text
        part = await c.get(f"/part?f=INBOX&uid={uid}&n=3")
        assert part.headers["content-disposition"].startswith("attachment;")
        assert part.headers["content-type"] == "application/octet-stream"
        assert part.headers["x-content-type-options"] == "nosniff"
        assert part.content == b"<script>alert(2)</script>"


async def test_csrf_token_required(bus: Bus, imap: ImapHarness, tmp_path: Path) -> None:
    [uid] = await imap.deliver(message(1))
    n = await node(bus, imap, tmp_path)
    async with n.client() as c:
        await login(c)
        form = {"f": "INBOX", "uid": str(uid), "action": "flag"}
        refused = await c.post("/act", data=form)
        assert refused.status_code == 403
        wrong = await c.post("/act", data=form | {"csrf": "x" * 43})
        assert wrong.status_code == 403
        page = await c.get("/mail?f=INBOX")
        assert "flagged" not in page.text.split('id="rows"')[1]
        token = csrf_of(page.text)
        cross = await c.post(
            "/act", data=form | {"csrf": token}, headers={"origin": "https://evil.example"}
        )
        assert cross.status_code == 403
        done = await c.post("/act", data=form | {"csrf": token})
        assert done.status_code == 303
        assert " flagged" in (await c.get("/mail?f=INBOX")).text.split('id="rows"')[1]
        # the login form has its own token, bound to a cookie
        c.cookies.clear()
        assert (await c.post("/login", data={"user": ALICE, "password": "x"})).status_code == 403


async def test_sessions_shared_between_nodes_and_ended_everywhere(
    bus: Bus, imap: ImapHarness, tmp_path: Path
) -> None:
    a = await node(bus, imap, tmp_path / "a")
    b = await node(bus, imap, tmp_path / "b")
    async with a.client() as ca, b.client() as cb, a.client() as other:
        await login(ca)
        await login(other)
        cb.cookies.update(ca.cookies)
        assert (await cb.get("/mail?f=INBOX")).status_code == 200  # node b knows a's session
        page = await cb.get("/settings")
        ended = await cb.post("/logout-everywhere", data={"csrf": csrf_of(page.text)})
        assert ended.status_code == 303
        assert (await ca.get("/mail?f=INBOX")).status_code == 303
        assert (await other.get("/mail?f=INBOX")).status_code == 303
        await login(ca)
        assert (await ca.get("/mail?f=INBOX")).status_code == 200  # a new login works
    await a.wm.pool.close()
    await b.wm.pool.close()


async def test_session_key_mismatch_is_logged_out(
    bus: Bus, imap: ImapHarness, tmp_path: Path
) -> None:
    import base64

    a = await node(bus, imap, tmp_path / "a")
    b = await node(
        bus,
        imap,
        tmp_path / "b",
        webmail_session_key=base64.urlsafe_b64encode(b"z" * 32).decode(),
    )
    async with a.client() as ca, b.client() as cb:
        await login(ca)
        cb.cookies.update(ca.cookies)
        assert (await cb.get("/mail?f=INBOX")).status_code == 303


async def test_login_throttled_per_account_address_and_address(
    bus: Bus, imap: ImapHarness, tmp_path: Path
) -> None:
    policy = {"login_max_failures": 2, "login_max_failures_per_address": 3, "auth_fail_delay": 0}
    n = await node(bus, imap, tmp_path, **policy)
    throttled = metric("postern_webmail_logins_total", outcome="throttled")
    async with n.client() as c:
        for _ in range(2):
            assert (await login(c, password="wrong password")).status_code == 401
        r = await login(c)  # right password, but this account from this address is throttled
        assert r.status_code == 429 and "Too many failed logins" in r.text
        assert (await login(c, user="bob@example.com", password="x")).status_code == 401
        assert (await login(c, user="carol@example.com", password="x")).status_code == 429
    assert metric("postern_webmail_logins_total", outcome="throttled") == throttled + 2
    # counted once each, in the shared bucket: what every node, filter and store reads
    shared = await LoginGuard.open(bus.js)
    assert await shared.failures("198.51.100.20", ALICE) == 2
    other = await node(bus, imap, tmp_path, **policy)  # another node, or this one restarted
    async with other.client() as c:
        assert (await login(c)).status_code == 429


async def test_login_from_another_address_still_works(
    bus: Bus, imap: ImapHarness, tmp_path: Path
) -> None:
    n = await node(bus, imap, tmp_path, login_max_failures=2, auth_fail_delay=0)
    async with n.client() as c:
        for _ in range(2):
            assert (await login(c, password="wrong password")).status_code == 401
        assert (await login(c)).status_code == 429
    async with n.client(peer="203.0.113.9") as c:
        assert (await login(c)).status_code == 303


async def test_compose_refuses_line_breaks(bus: Bus, imap: ImapHarness, tmp_path: Path) -> None:
    n = await node(bus, imap, tmp_path)
    async with n.client() as c:
        await login(c)
        page = await c.get("/compose")
        r = await c.post(
            "/compose",
            data={
                "csrf": csrf_of(page.text),
                "to": "bob@example.com",
                "subject": "hi\r\nBcc: victim@example.org",
                "body": "x",
                "action": "send",
            },
        )
        assert r.status_code == 400
        assert "The Subject field contains a line break" in r.text
        bad = await c.post(
            "/compose",
            data={
                "csrf": csrf_of(page.text),
                "to": "not an address",
                "subject": "s",
                "action": "send",
            },
        )
        assert bad.status_code == 400 and "is not an e-mail address" in bad.text


async def test_drafts_folders_and_identity(bus: Bus, imap: ImapHarness, tmp_path: Path) -> None:
    n = await node(bus, imap, tmp_path)
    async with n.client() as c:
        await login(c)
        token = csrf_of((await c.get("/settings")).text)
        r = await c.post("/settings", data={"csrf": token, "op": "identity", "name": "Alice A"})
        assert r.status_code == 303
        assert 'value="Alice A"' in (await c.get("/settings")).text
        r = await c.post(
            "/compose",
            data={
                "csrf": token,
                "to": "bob@example.com",
                "subject": "draft one",
                "body": "b",
                "action": "draft",
            },
            files={"attachment": ("notes.txt", b"hello", "text/plain")},
        )
        assert r.status_code == 303
        drafts = await c.get("/mail?f=Drafts")
        assert "draft one" in drafts.text
        for op, data in (
            ("create", {"name": "Projects"}),
            ("rename", {"old": "Projects", "name": "Work"}),
        ):
            assert (
                await c.post("/folders", data={"csrf": token, "op": op} | data)
            ).status_code == 303
        assert ">Work<" in (await c.get("/folders")).text
        bad = await c.post("/folders", data={"csrf": token, "op": "create", "name": 'a"b'})
        assert bad.status_code == 400
        await c.post("/folders", data={"csrf": token, "op": "delete", "old": "Work"})
        assert ">Work<" not in (await c.get("/folders")).text


async def test_store_sees_the_browser_address(bus: Bus, imap: ImapHarness, tmp_path: Path) -> None:
    from services.store.auth import parse_networks

    imap.rt.trusted_id_networks = parse_networks("127.0.0.0/8")  # the webmail node
    n = await node(bus, imap, tmp_path)
    async with n.client() as c:  # the browser is 198.51.100.20 (see app_harness)
        assert (await login(c, password="wrong password")).status_code == 401
    by_ip = imap.rt.auth.throttle._by_ip
    assert "198.51.100.20" in by_ip and "127.0.0.1" not in by_ip


async def test_conversation_view(bus: Bus, imap: ImapHarness, tmp_path: Path) -> None:
    uids = await imap.deliver(
        message(1, subject="plans"), message(2, subject="Re: plans", body=b"second word\r\n")
    )
    n = await node(bus, imap, tmp_path)
    async with n.client() as c:
        await login(c)
        page = await c.get("/mail?f=INBOX&view=threads")
        assert page.status_code == 200
        assert 'aria-label="2 messages"' in page.text
        assert f'value="{uids[0]},{uids[1]}"' in page.text  # one checkbox for both
        conv = await c.get(f"/conversation?f=INBOX&uids={uids[0]},{uids[1]}")
        assert conv.status_code == 200
        assert "(2 messages)" in conv.text and "second word" in conv.text
        token = csrf_of(page.text)
        r = await c.post(
            "/act",
            data={"csrf": token, "f": "INBOX", "uid": f"{uids[0]},{uids[1]}", "action": "unread"},
        )
        assert r.status_code == 303
        rows = (await c.get("/mail?f=INBOX&fragment=rows")).text
        assert rows.count("row unread") == 2


async def test_password_change(bus: Bus, imap: ImapHarness, tmp_path: Path) -> None:
    import asyncio

    from services.webmail.imap_gateway import ImapClient, ImapError, Upstream

    n = await node(bus, imap, tmp_path)
    new = "a brand new password"
    async with n.client() as c, n.client() as other:
        await login(c)
        await login(other)
        token = csrf_of((await c.get("/settings")).text)
        wrong = await c.post(
            "/settings",
            data={"csrf": token, "op": "password", "old": "nope", "new": new, "again": new},
        )
        assert wrong.status_code == 400 and "current password is wrong" in wrong.text
        r = await c.post(
            "/settings",
            data={"csrf": token, "op": "password", "old": PASSWORD, "new": new, "again": new},
        )
        assert r.status_code == 303
        assert (await other.get("/mail?f=INBOX")).status_code == 303  # ended everywhere
        assert (await c.get("/settings?done=password")).status_code == 200  # this one lives
    up = Upstream("127.0.0.1", imap.port)
    for _ in range(100):  # the store's directory follows the bucket
        try:
            client = await ImapClient.connect(up, ALICE, new, client_ip=None)
        except ImapError:
            await asyncio.sleep(0.1)
            continue
        await client.close()
        break
    else:
        raise AssertionError("the new password never worked")
