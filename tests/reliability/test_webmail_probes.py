"""The webmail probes of the bad-input table: each judge passes what a safe webmail
answers and fails what an unsafe one would; and all of them pass against a real webmail
node in front of a real cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability.hostile.webmail import (
    HOSTILE_HTML,
    judge_body,
    judge_cookie,
    judge_csrf,
    webmail_probes,
)
from reliability.scenarios.common import Context, cluster_run

SAFE_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox allow-popups"
)
RAW = "<html><body><p>Hello</p>" + "".join(h for _, h, _ in HOSTILE_HTML) + "</body></html>"


def test_a_sanitized_body_passes_every_row() -> None:
    rows = judge_body(200, "<p>Hello</p><a>x</a><img>", SAFE_CSP)
    assert len(rows) == len(HOSTILE_HTML)
    assert all(r.ok for r in rows), rows


def test_the_raw_hostile_html_fails_every_row() -> None:
    rows = judge_body(200, RAW, SAFE_CSP)
    assert not any(r.ok for r in rows), [r for r in rows if r.ok]
    assert all(r.got.startswith("still there") for r in rows)


def test_a_csp_allowing_script_or_remote_images_fails() -> None:
    body = "<p>Hello</p>"
    assert not any(r.ok for r in judge_body(200, body, SAFE_CSP + "; script-src 'self'"))
    open_images = SAFE_CSP.replace("img-src data:", "img-src data: https:")
    assert not any(r.ok for r in judge_body(200, body, open_images))
    assert not any(r.ok for r in judge_body(403, body, SAFE_CSP))  # not shown at all


def test_cookie_flags() -> None:
    http = ["postern_session=abc; HttpOnly; Path=/; SameSite=lax"]
    assert judge_cookie("s", http, "postern_session", https=False).ok
    assert not judge_cookie("s", http, "postern_session", https=True).ok  # Secure missing
    secure = [http[0] + "; Secure"]
    assert judge_cookie("s", secure, "postern_session", https=True).ok
    assert not judge_cookie("s", secure, "postern_session", https=False).ok
    no_httponly = ["postern_session=abc; Path=/; SameSite=lax"]
    assert not judge_cookie("s", no_httponly, "postern_session", https=False).ok
    lax_none = ["postern_session=abc; HttpOnly; Path=/; SameSite=None"]
    assert not judge_cookie("s", lax_none, "postern_session", https=False).ok
    assert not judge_cookie("s", ["other=1; HttpOnly; SameSite=lax"], "postern_session", False).ok


def test_csrf_is_refused_only_when_403_and_nothing_changed() -> None:
    assert judge_csrf("x", 403, changed=False).ok
    assert not judge_csrf("x", 303, changed=True).ok
    assert not judge_csrf("x", 403, changed=True).ok
    assert not judge_csrf("x", 200, changed=False).ok


@pytest.mark.slow
async def test_every_webmail_probe_passes_against_a_real_node(tmp_path: Path) -> None:
    async with cluster_run(Context(tmp_path), "webmail-probes") as run:
        user, password = list(run.cluster.users.items())[3]
        probes = await webmail_probes(run.cluster, user, password)
    areas = {p.area for p in probes}
    assert areas == {"webmail HTML", "webmail CSRF", "webmail cookies"}
    assert len(probes) == len(HOSTILE_HTML) + 8
    assert all(p.ok for p in probes), [p for p in probes if not p.ok]
