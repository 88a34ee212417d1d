"""The compose deployment for real, in Docker, over its published ports (issue 17).

Built images (make images), `up --scale filter=3`, every health check green, then: mail
through HAProxy lands exactly once and every filter replica took a share; the real
scanner containers refuse GTUBE (550) and EICAR (554); killing a filter replica under
load or restarting the store loses no message that got a 250; outbound mail reaches a
remote MX through the relays; webmail sessions work on every replica; Prometheus (profile
monitoring) scrapes every replica and every NATS node; each service is its own NATS user
over TLS (issue 18). The ha variant is in
test_ha.py (its own module: this stack is down before that one comes up)."""

from __future__ import annotations

import http.cookiejar
import json
import re
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from stack import EICAR, GTUBE, SCALE, Stack


def _send_all(stack: Stack, subjects: list[str], workers: int = 6) -> dict[str, int]:
    with ThreadPoolExecutor(workers) as pool:
        codes = pool.map(stack.send, subjects)
        return dict(zip(subjects, codes, strict=True))


def test_every_service_healthy_and_named(stack: Stack) -> None:
    services = set(stack.compose("ps", "--services").split())
    assert {"nats", "clamav", "spamd", "filter", "store", "webmail", "haproxy"} <= services
    assert len(stack.containers("filter")) == 3
    for cid in stack.containers():
        info = stack.inspect(cid)
        if info["State"]["Status"] == "running":
            uid = subprocess.run(
                ["docker", "exec", cid, "id", "-u"], capture_output=True, text=True, check=True
            ).stdout.strip()
            assert uid != "0", info["Name"]


def test_relay_delivers_submitted_mail_to_the_remote_mx(stack: Stack) -> None:
    # outbound: submission through HAProxy, AUTH, the filters queue it, one of the two
    # relay replicas delivers it to the remote MX that POSTERN_RELAY_ROUTES names
    assert len(stack.containers("relay")) == 2
    stack.start_sink()
    subjects = [f"out-{i:02d}" for i in range(10)]
    for subject in subjects:
        assert stack.submit(subject, "bob@remote.test") == 250
    deadline = time.monotonic() + 180
    log = stack.sink_log()
    while not all(f"Subject: {s}" in log for s in subjects) and time.monotonic() < deadline:
        time.sleep(2)
        log = stack.sink_log()
    counts = {s: log.count(f"Subject: {s}\n") for s in subjects}
    assert counts == dict.fromkeys(subjects, 1), counts  # each exactly once
    delivered = sum(
        stack.metric(cid, "postern_relay_deliveries_total", port=9105)
        for cid in stack.containers("relay")
    )
    assert delivered >= len(subjects)


def test_webmail_session_works_on_every_replica(stack: Stack) -> None:
    # the session lives in KV, sealed with the key the certs job made in the shared
    # webmail-data volume: whichever replica HAProxy picks serves the logged-in user
    assert len(stack.containers("webmail")) == 2
    base = f"http://127.0.0.1:{stack.ports['WEBMAIL']}"
    jar = http.cookiejar.CookieJar()
    web = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    form = web.open(f"{base}/login", timeout=30).read().decode()
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf, form
    data = urllib.parse.urlencode(
        {"user": "alice@compose.test", "password": "secret-pw", "csrf": csrf[1], "next": "/"}
    ).encode()
    web.open(f"{base}/login", data=data, timeout=30).read()
    served = set()

    def pages() -> list[float]:
        return [
            stack.metric(cid, "postern_webmail_requests_total", 9103, 'route="/mail",status="200"')
            for cid in stack.containers("webmail")
        ]

    # Round robin: both replicas serve some of these, once HAProxy has found the second
    # one through Docker's DNS and seen it pass a check (a healthy container may still be
    # a few resolver rounds away from the balancer): ask until both have served, or give up.
    deadline = time.monotonic() + 90
    while True:
        for _ in range(6):
            reply = web.open(f"{base}/mail", timeout=30)
            assert not reply.url.endswith("/login") and "/login?" not in reply.url, reply.url
            served.add('action="/logout"' in reply.read().decode())  # a logged-in page
        if all(n > 0 for n in pages()) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert served == {True}
    # both replicas served the logged-in user's mailbox page with status 200
    assert all(n > 0 for n in pages()), pages()


def test_300_messages_land_exactly_once_across_replicas(stack: Stack) -> None:
    subjects = [f"bulk-{i:03d}" for i in range(300)]
    codes = _send_all(stack, subjects)
    assert set(codes.values()) == {250}, {s: c for s, c in codes.items() if c != 250}
    got = stack.wait_delivered(set(subjects))
    bulk = [s for s in got if s.startswith("bulk-")]
    assert sorted(bulk) == subjects  # every one, none twice
    shares = [
        stack.metric(cid, "postern_smtp_accepted_total") for cid in stack.containers("filter")
    ]
    assert all(n > 0 for n in shares), shares
    assert sum(shares) >= 300


def test_scanner_containers_refuse_gtube_and_eicar(stack: Stack) -> None:
    assert stack.send("gtube", f"spam follows\r\n{GTUBE}") == 550
    assert stack.send("eicar", f"pasted into the body: {EICAR} and more text") == 554
    assert stack.send("clean", "an ordinary message") == 250


def test_killing_a_filter_under_load_loses_no_accepted_message(stack: Stack) -> None:
    subjects = [f"kill-{i:03d}" for i in range(150)]
    victim = stack.containers("filter")[0]
    started = threading.Event()
    codes: dict[str, int] = {}

    def send(subject: str) -> None:
        codes[subject] = stack.send(subject)
        if len(codes) >= 30:
            started.set()

    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(send, s) for s in subjects]
        started.wait(timeout=300)
        subprocess.run(["docker", "kill", victim], check=True, capture_output=True)
        for f in futures:
            f.result()
    accepted = {s for s, c in codes.items() if c == 250}
    assert len(accepted) >= 100, codes  # HAProxy moved on to the live replicas
    got = set(stack.wait_delivered(accepted))
    assert accepted <= got, sorted(accepted - got)
    stack.compose("up", "-d", "--no-build", *SCALE)
    stack.wait_healthy()


def test_restarting_the_store_loses_nothing(stack: Stack) -> None:
    before = [f"restart-a-{i:02d}" for i in range(30)]
    assert set(_send_all(stack, before).values()) == {250}
    subprocess.run(
        ["docker", "restart", "-t", "10", stack.containers("store")[0]],
        check=True,
        capture_output=True,
    )
    # filters need only NATS: mail is accepted while the store is coming back
    after = [f"restart-b-{i:02d}" for i in range(30)]
    assert set(_send_all(stack, after).values()) == {250}
    stack.wait_healthy()
    got = stack.wait_delivered(set(before + after))
    mine = sorted(s for s in got if s.startswith("restart-"))
    assert mine == sorted(before + after)


def test_nats_server_that_dies_comes_back_by_the_restart_policy(stack: Stack) -> None:
    # PID 1 of the nats container is services.ctl.natsrun (it re-enables a JetStream a
    # full disk switched off, tests/services/ctl/test_natsrun.py); when nats-server itself
    # dies the runner exits and Docker restarts the container
    (nats,) = stack.containers("nats")
    kill = (
        "import os, signal\n"
        "for p in os.listdir('/proc'):\n"
        "    if p.isdigit() and p != '1':\n"
        "        try: cmd = open(f'/proc/{p}/cmdline', 'rb').read()\n"
        "        except OSError: continue\n"
        "        if cmd.startswith(b'nats-server'): os.kill(int(p), signal.SIGKILL); print(p)\n"
    )
    out = subprocess.run(
        ["docker", "exec", nats, "python3", "-c", kill], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip(), "no nats-server process under the runner"
    while stack.inspect(nats)["RestartCount"] < 1:
        time.sleep(1)
    stack.wait_healthy()
    after = [f"natsdied-{i:02d}" for i in range(10)]
    with ThreadPoolExecutor(4) as pool:
        codes = dict(zip(after, pool.map(stack.send_until_accepted, after), strict=True))
    assert set(codes.values()) == {250}, codes
    got = stack.wait_delivered(set(after))
    assert sorted(s for s in got if s.startswith("natsdied-")) == after


def test_mirror_profile_replicates_to_the_second_store(stack: Stack) -> None:
    """Mail over SMTP to the primary is read over IMAP on the second store, with the same
    UIDs and UIDVALIDITY; the second store never consumed inbound mail itself."""
    mirror = [*stack.base, "--profile", "mirror"]
    subprocess.run(
        [*mirror, "up", "-d", "--no-build", "nats-mirror", "store2", "mirror", "mirror2"],
        env=stack.env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    stack.wait_healthy()
    # alice's directory entry reaches nats-mirror by the mirrors' live directory following
    # (docs/mirror.md); wait_delivered retries the second store's login until it is there
    subjects = [f"mirror-{i:02d}" for i in range(10)]
    assert set(_send_all(stack, subjects).values()) == {250}
    got = stack.wait_delivered(set(subjects))
    assert sorted(s for s in got if s.startswith("mirror-")) == subjects
    on_mirror = stack.wait_delivered(set(subjects), port="MIRROR_IMAP")
    assert sorted(s for s in on_mirror if s.startswith("mirror-")) == subjects
    primary, second = stack.inbox_uids("IMAP"), stack.inbox_uids("MIRROR_IMAP")
    assert second[0] == primary[0]  # UIDVALIDITY
    assert {s: second[1][s] for s in subjects} == {s: primary[1][s] for s in subjects}
    (store2,) = stack.containers("store2")
    assert stack.metric(store2, "postern_deliveries_total", port=9102) == 0
    (store,) = stack.containers("store")
    assert stack.metric(store, "postern_deliveries_total", port=9102) >= len(subjects)
    (mirror2,) = stack.containers("mirror2")
    applied = stack.metric(mirror2, "postern_mirror_records_applied_total", port=9104)
    assert applied >= len(subjects)


def _prometheus(stack: Stack, path: str) -> dict:
    url = f"http://127.0.0.1:{stack.ports['PROMETHEUS']}{path}"
    with urllib.request.urlopen(url, timeout=30) as reply:
        return dict(json.loads(reply.read())["data"])


def test_monitoring_profile_scrapes_every_replica_and_nats(stack: Stack) -> None:
    """Prometheus (Debian's package, profile monitoring) finds every running replica
    through Docker's DNS and scrapes it, the nats nodes' runners among them (natsrun
    --ops-port: Debian has no NATS exporter), so the dashboards' queue depth has NATS's own
    count of the store's backlog."""
    subprocess.run(
        [*stack.base, "--profile", "monitoring", "up", "-d", "--no-build", "prometheus"],
        env=stack.env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    stack.wait_healthy()
    jobs = {
        "postern-filter": ("filter",),
        "postern-relay": ("relay",),
        "postern-webmail": ("webmail",),
        "postern-store": ("store", "store2"),
        "postern-mirror": ("mirror", "mirror2"),
        "postern-nats": ("nats", "nats-mirror"),
    }
    wanted = {
        job: sum(
            stack.inspect(cid)["State"]["Running"]
            for service in services
            for cid in stack.containers(service)
        )
        for job, services in jobs.items()
    }
    assert wanted["postern-filter"] == 3 and wanted["postern-nats"] >= 1, wanted
    deadline = time.monotonic() + 240
    while True:
        up = dict.fromkeys(jobs, 0)
        for target in _prometheus(stack, "/api/v1/targets?state=active")["activeTargets"]:
            if target["labels"]["job"] in up and target["health"] == "up":
                up[target["labels"]["job"]] += 1
        if up == wanted:
            break
        assert time.monotonic() < deadline, (up, wanted)
        time.sleep(3)
    query = urllib.parse.quote(
        'postern_nats_consumer_pending{stream="MAIL_INBOUND",consumer="store-delivery"}'
    )
    while not _prometheus(stack, f"/api/v1/query?query={query}")["result"]:
        assert time.monotonic() < deadline, "no postern_nats_consumer_pending in Prometheus"
        time.sleep(3)


def test_each_service_is_its_own_nats_user_over_tls(stack: Stack) -> None:
    # issue 18 (docs/security.md): after all the traffic above, each service connected as
    # its own user with its own password, NATS refused nothing, and it speaks TLS only
    passwords = {}
    for service in ("filter", "relay", "store", "webmail"):
        cid = stack.containers(service)[0]
        env = stack.inspect(cid)["Config"]["Env"]
        assert f"POSTERN_NATS_USER={service}" in env, service
        passwords[service] = subprocess.run(
            ["docker", "exec", cid, "cat", "/var/lib/postern/nats-secret/password"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    assert len(set(passwords.values())) == len(passwords)  # a volume each, none shared
    logs = stack.compose("logs", "--no-color", "nats")
    assert [line for line in logs.splitlines() if "Violation" in line] == []
    info = subprocess.run(
        [
            "docker",
            "exec",
            stack.containers("store")[0],
            "python3",
            "-c",
            "import socket; s = socket.create_connection(('nats', 4222), 5); "
            "print(s.makefile('rb').readline().decode())",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert '"tls_required":true' in info
