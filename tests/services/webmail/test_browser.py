"""End to end in a real browser: Playwright for Python driving Debian's chromium
(/usr/bin/chromium, no browser download) against real processes — nats-server, the store,
a filter, two webmail nodes behind one address, and spamd for "spam / not spam"."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from services.ctl import daemons
from tests.conftest import fresh_bus
from tests.services.webmail.cluster import (
    ALICE,
    BOB,
    PASSWORD,
    Balancer,
    Cluster,
    Tarpit,
    html,
    plain,
    provision,
)
from tests.support.daemons import NatsServer, Spamd, missing

CHROMIUM = "/usr/bin/chromium"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


class TellingSpamd(Spamd):
    """spamd that accepts TELL and has a Bayes database it may write. Its children run as
    nobody, so their config and database live in a directory nobody can reach (pytest's
    temporary directories are private to root)."""

    def __init__(self, workdir: Path, binary: str) -> None:
        super().__init__(workdir, binary)
        self.shared = Path(tempfile.mkdtemp(prefix="postern-spamd-"))
        self.shared.chmod(0o755)

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.shared, ignore_errors=True)

    def command(self) -> list[str]:
        site = self.shared / "site"
        home = self.shared / "home"
        for d in (site, home):
            d.mkdir(exist_ok=True)
            d.chmod(0o777)
        for pre in Path("/etc/spamassassin").glob("*.pre"):
            shutil.copy(pre, site / pre.name)
        (site / "local.cf").write_text(
            f"bayes_path {home}/bayes\nbayes_file_mode 0777\nlock_method flock\n"
        )
        return [
            *super().command(),
            "--allow-tell",
            f"--helper-home-dir={home}",
            f"--siteconfigpath={site}",
        ]


@pytest.fixture(scope="module")
async def cluster(
    nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Cluster, Balancer, Tarpit]]:
    binary = daemons.spamd_binary()
    if binary is None:
        missing("spamd")
        raise AssertionError
    work = tmp_path_factory.mktemp("webmail-e2e")
    spamd = TellingSpamd(work / "spamd", binary)
    spamd.start(timeout=120)
    bus = await fresh_bus(nats_server.url)
    await provision(bus)
    c = Cluster(nats_server.url, work, spamd=spamd)
    lb = Balancer([])
    tarpit = Tarpit()
    try:
        c.start_store()
        c.start_filter()
        lb.ports = [c.start_webmail().port, c.start_webmail().port]
        await lb.start()
        await tarpit.start()
        yield c, lb, tarpit
    finally:
        await lb.stop()
        await tarpit.stop()
        c.stop()
        spamd.stop()
        await bus.close()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not os.path.exists(CHROMIUM):
        missing("chromium")
    async with async_playwright() as p:
        b = await p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        await b.close()


async def logged_in(
    browser: Browser, port: int, viewport: Any = DESKTOP
) -> tuple[BrowserContext, Page]:
    ctx = await browser.new_context(viewport=viewport, base_url=f"http://127.0.0.1:{port}")
    page = await ctx.new_page()
    await page.goto("/login")
    await page.get_by_label("E-mail address").fill(ALICE)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("table.list")).to_be_visible()
    return ctx, page


async def test_read_and_reply_with_attachment(
    cluster: tuple[Cluster, Balancer, Tarpit], browser: Browser, tmp_path: Path
) -> None:
    c, lb, _ = cluster
    await c.smtp(plain("Lunch on Thursday?", "Shall we meet at noon?"))
    ctx, page = await logged_in(browser, lb.port)
    try:
        await page.get_by_role("link", name="Lunch on Thursday?").click()
        await expect(page.locator("pre.text")).to_contain_text("Shall we meet at noon?")
        await page.get_by_role("link", name="Reply", exact=True).click()
        await expect(page.get_by_label("To")).to_have_value(re.compile("carol@remote.test"))
        # the reply goes to bob (local) so the test can read what arrives
        await page.get_by_label("To").fill(BOB)
        await page.get_by_label("Message").fill(
            "Noon is fine.\n" + await page.get_by_label("Message").input_value()
        )
        attachment = tmp_path / "agenda.txt"
        attachment.write_text("1. soup\n2. bread\n")
        await page.get_by_label("Attachments").set_input_files(str(attachment))
        await page.get_by_role("button", name="Send").click()
        await expect(page.locator("table.list")).to_be_visible()
    finally:
        await ctx.close()
    [got] = await c.mailbox(BOB, "INBOX")
    assert got["Subject"] == "Re: Lunch on Thursday?"
    assert got["In-Reply-To"] is not None
    parts = {p.get_filename(): p.get_payload(decode=True) for p in got.walk()}
    assert parts["agenda.txt"] == b"1. soup\n2. bread\n"
    sent = await c.mailbox(ALICE, "Sent")
    assert any(m["Subject"] == "Re: Lunch on Thursday?" for m in sent)


async def test_new_mail_appears_without_reload(
    cluster: tuple[Cluster, Balancer, Tarpit], browser: Browser
) -> None:
    c, lb, _ = cluster
    ctx, page = await logged_in(browser, lb.port)
    try:
        await page.evaluate("window.__sameDocument = 'yes'")
        await page.wait_for_timeout(500)  # the event stream connects
        await c.smtp(plain("Pushed to the page"))
        await expect(page.get_by_role("link", name="Pushed to the page")).to_be_visible(
            timeout=30_000
        )
        assert await page.evaluate("window.__sameDocument") == "yes"  # no reload happened
    finally:
        await ctx.close()


async def test_mail_between_render_and_event_stream_still_appears(
    cluster: tuple[Cluster, Balancer, Tarpit], browser: Browser
) -> None:
    """The page is rendered, mail arrives, and only then does its event stream connect and
    IDLE: the stream must still tell the page (IDLE reports only later changes)."""
    c, lb, _ = cluster
    ctx = await browser.new_context(viewport=DESKTOP, base_url=f"http://127.0.0.1:{lb.port}")
    release = asyncio.Event()

    async def hold(route: Any) -> None:
        await release.wait()
        await route.continue_()

    try:
        await ctx.route(re.compile(r"/events\?"), hold)
        page = await ctx.new_page()
        await page.goto("/login")
        await page.get_by_label("E-mail address").fill(ALICE)
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Log in").click()
        await expect(page.locator("table.list")).to_be_visible()
        before = len(await c.mailbox(ALICE, "INBOX", at_least=0))
        await c.smtp(plain("Arrived before the stream"))
        await c.mailbox(ALICE, "INBOX", at_least=before + 1)  # in the store, not yet shown
        await expect(page.get_by_role("link", name="Arrived before the stream")).to_have_count(0)
        release.set()
        await expect(page.get_by_role("link", name="Arrived before the stream")).to_be_visible(
            timeout=30_000
        )
    finally:
        release.set()
        await ctx.close()


async def test_move_search_and_spam(
    cluster: tuple[Cluster, Balancer, Tarpit], browser: Browser
) -> None:
    c, lb, _ = cluster
    await c.smtp(plain("Quarterly figures", "the numbers are in"))
    await c.smtp(plain("Cheap watches", "buy buy buy"))
    ctx, page = await logged_in(browser, lb.port)
    try:
        # move to a new folder
        await page.goto("/folders")
        await page.get_by_label("New folder").fill("Reports")
        await page.get_by_role("button", name="Create").click()
        await page.goto("/mail?f=INBOX")
        row = page.locator("tr.row", has_text="Quarterly figures")
        await row.get_by_role("checkbox").check()
        await page.locator("#dest").select_option("Reports")
        await page.get_by_role("button", name="Move").click()
        await expect(page.get_by_role("link", name="Quarterly figures")).to_have_count(0)
        await page.locator("#folders").get_by_role("link", name=re.compile("^Reports")).click()
        await expect(page.get_by_role("link", name="Quarterly figures")).to_be_visible()
        # search (server-side), from the Inbox
        await page.goto("/mail?f=INBOX")
        await page.get_by_label("Search mail").fill("watches")
        await page.get_by_label("Search mail").press("Enter")
        await expect(page.locator("tr.row")).to_have_count(1)
        await expect(page.get_by_role("link", name="Cheap watches")).to_be_visible()
        # spam: moved to Junk, and spamd learned it
        await page.get_by_role("link", name="Cheap watches").click()
        await page.get_by_role("button", name="Spam").click()
        await expect(page.get_by_role("link", name="Cheap watches")).to_have_count(0)
    finally:
        await ctx.close()
    junk = await c.mailbox(ALICE, "Junk")
    assert [m["Subject"] for m in junk] == ["Cheap watches"]
    assert c.spamd is not None
    assert f"Tell: Setting local for {ALICE}" in c.spamd.log_path.read_text(errors="replace")


XSS = [
    "<script>top.document.body.dataset.pwned='script'</script>",
    "<img src=x onerror=\"top.document.body.dataset.pwned='onerror'\">",
    "<svg><script>top.document.body.dataset.pwned='svg'</script></svg>",
    "<svg onload=\"top.document.body.dataset.pwned='svgload'\"></svg>",
    "<a href=\"javascript:top.document.body.dataset.pwned='js'\" id=jslink>click</a>",
    "<iframe srcdoc=\"<script>top.document.body.dataset.pwned='srcdoc'</script>\"></iframe>",
    '<math><mtext><table><mglyph><style><img src=x onerror="top.document.body.dataset.'
    "pwned='mxss'\"></style></mglyph></table></mtext></math>",
    '<noscript><p title="</noscript><img src=x onerror=top.document.body.dataset.pwned=1>">',
    "<object data=\"javascript:top.document.body.dataset.pwned='object'\"></object>",
    '<form action="javascript:alert(1)"><button>go</button></form>',
    "<details open ontoggle=\"top.document.body.dataset.pwned='toggle'\">x</details>",
    '<img src="{remote}/img.png">',
    '<img srcset="{remote}/srcset.png 1x">',
    '<div style="background-image:url({remote}/bg.png)">bg</div>',
    "<style>@import url({remote}/import.css); body{{background:url({remote}/b.png)}}</style>",
    '<link rel=stylesheet href="{remote}/link.css">',
    '<meta http-equiv=refresh content="0;url={remote}/refresh">',
    '<body background="{remote}/body.png">x</body>',
    '<table background="{remote}/table.png"><tr><td>x</td></tr></table>',
    '<video poster="{remote}/poster.png"></video><audio src="{remote}/a.mp3"></audio>',
    '<base href="{remote}/"><img src="relative.png">',
    "<style>@font-face{{font-family:x;src:url({remote}/font.woff)}} p{{font-family:x}}</style>"
    "<p>font</p>",
    '<input type=image src="{remote}/input.png">',
    '<embed src="{remote}/embed.swf">',
]


async def test_hostile_html_runs_no_script_and_loads_nothing_remote(
    cluster: tuple[Cluster, Balancer, Tarpit], browser: Browser
) -> None:
    c, lb, tarpit = cluster
    remote = f"http://127.0.0.2:{tarpit.port}"
    for i, markup in enumerate(XSS):
        await c.smtp(html(f"hostile {i:02d}", markup.format(remote=remote)))
    await c.mailbox(ALICE, "INBOX", at_least=len(XSS))
    ctx, page = await logged_in(browser, lb.port)
    requests: list[str] = []
    dialogs: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("dialog", lambda d: dialogs.append(d.message))
    try:
        for i in range(len(XSS)):
            await page.goto(f"/mail?f=INBOX&q=hostile+{i:02d}")
            await page.get_by_role("link", name=f"hostile {i:02d}").click()
            frame_el = page.locator("iframe.body")
            await expect(frame_el).to_be_visible()
            frame = await (await frame_el.element_handle()).content_frame()
            assert frame is not None
            await frame.wait_for_load_state("load")
            if await frame.locator("#jslink").count():
                await frame.locator("#jslink").click()
            if await frame.get_by_role("button", name="go").count():
                await frame.get_by_role("button", name="go").click()
            await page.wait_for_timeout(200)
            assert await page.evaluate("document.body.dataset.pwned") is None, XSS[i]
            assert await frame.evaluate("document.body.dataset.pwned") is None, XSS[i]
            assert await frame.evaluate("document.scripts.length") == 0, XSS[i]
    finally:
        await ctx.close()
    assert dialogs == []
    assert [u for u in requests if "127.0.0.2" in u] == []
    assert tarpit.hits == []


async def test_csrf_without_token_is_refused(
    cluster: tuple[Cluster, Balancer, Tarpit], browser: Browser
) -> None:
    c, lb, _ = cluster
    await c.smtp(plain("Keep me"))
    ctx, page = await logged_in(browser, lb.port)
    try:
        uid = await page.locator("tr.row", has_text="Keep me").get_attribute("data-uid")
        status = await page.evaluate(
            """async (uid) => {
                const body = new URLSearchParams({f: 'INBOX', uid, action: 'delete'});
                const r = await fetch('/act', {method: 'POST', body, credentials: 'same-origin'});
                return r.status;
            }""",
            uid,
        )
        assert status == 403
        await page.reload()
        await expect(page.get_by_role("link", name="Keep me")).to_be_visible()
    finally:
        await ctx.close()


async def test_two_nodes_one_address_survive_a_kill(
    cluster: tuple[Cluster, Balancer, Tarpit], browser: Browser
) -> None:
    c, lb, _ = cluster
    await c.smtp(plain("Still here after a crash"))
    ctx, page = await logged_in(browser, lb.port)
    try:
        cookies = {k["name"]: k["value"] for k in await ctx.cookies()}
        # the session started through the balancer works on each node directly
        for node in c.webmails:
            async with httpx.AsyncClient(cookies=cookies) as h:
                r = await h.get(f"http://127.0.0.1:{node.port}/mail?f=INBOX")
                assert r.status_code == 200 and "Still here after a crash" in r.text
        victim = c.webmails[0]
        victim.kill()
        for _ in range(3):  # every request now lands on the survivor
            await page.goto("/mail?f=INBOX")
            await page.get_by_role("link", name="Still here after a crash").click()
            await expect(page.locator("pre.text")).to_contain_text("Hello there.")
        victim.start()  # back for later tests
    finally:
        await ctx.close()


async def test_screenshots(
    cluster: tuple[Cluster, Balancer, Tarpit], browser: Browser, tmp_path: Path
) -> None:
    """Inbox and message at desktop and phone widths; POSTERN_WEBMAIL_SCREENSHOTS=dir keeps
    them (docs/webmail/ in the repository)."""
    c, lb, _ = cluster
    for sender, subject in (
        ("Dana Scully <dana@remote.test>", "Minutes of Monday's meeting"),
        ("Build bot <ci@remote.test>", "Nightly build passed"),
        ("Fox Mulder <fox@remote.test>", "Re: the files you asked for"),
        ("Travel desk <travel@remote.test>", "Your itinerary for Lisbon"),
    ):
        await c.smtp(plain(subject, "Details inside.", sender=sender))
    await c.smtp(
        html(
            "Welcome to Postern",
            "<h2>Welcome!</h2><p>This message is <b>HTML</b>, shown in a sandboxed frame.</p>"
            "<p><a href='https://example.org/'>A link</a> opens in a new tab.</p>",
        )
    )
    out = Path(os.environ.get("POSTERN_WEBMAIL_SCREENSHOTS", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        ctx, page = await logged_in(browser, lb.port, viewport)
        try:
            await page.screenshot(path=str(out / f"inbox-{label}.png"))
            await page.get_by_role("link", name="Welcome to Postern").first.click()
            frame = page.frame_locator("iframe.body")
            await expect(frame.locator("h2")).to_have_text("Welcome!")
            await page.screenshot(path=str(out / f"message-{label}.png"))
        finally:
            await ctx.close()
        assert (out / f"inbox-{label}.png").stat().st_size > 1000
    await asyncio.sleep(0)
