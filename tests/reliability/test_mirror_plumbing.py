"""The mirror scenarios' plumbing: they are registered and selectable, the pair's second
side gets its own data, NATS and ports and its mirrors reach the peer through their
links, resync progress lines are read, and a run reads every store of the pair (the
final snapshot is all stores or none, so a store that stopped answering fails the run
instead of leaving its side unchecked)."""

from __future__ import annotations

from pathlib import Path

from reliability.checker import MailboxView, check
from reliability.cluster import Cluster
from reliability.ledger import Entry, Outcome
from reliability.linkproxy import LinkProxy
from reliability.pair import NODE_A, NODE_B, MirrorPair, resync_progress, side_a_env
from reliability.scenarios import select
from reliability.scenarios.common import Context, Run

MIRROR = {"mirror-link-cut", "mirror-link-flap", "mirror-resync-kill"}


def test_mirror_scenarios_are_a_family_chosen_by_name_prefix_or_family() -> None:
    assert {s.name for s in select(["mirror"])} == MIRROR
    assert {s.name for s in select(["mirror-link"])} == {"mirror-link-cut", "mirror-link-flap"}
    assert {s.name for s in select(["mirror-resync-kill", "baseline"])} == {
        "mirror-resync-kill",
        "baseline",
    }
    assert not MIRROR & {s.name for s in select(None, ["mirror"])}


def test_resync_progress_lines() -> None:
    assert resync_progress("resync: 240/601 messages, account 1/4, fixed 240") == (240, 601)
    assert resync_progress("resync: 0/0 messages, fixed 0") == (0, 0)
    assert resync_progress("full resync to store-b done: 4 accounts, 9 messages") is None
    assert resync_progress("mailctl: store store-b: state: NoRespondersError") is None


def test_side_b_is_a_second_site_and_the_mirrors_go_through_their_links(tmp_path: Path) -> None:
    c = Cluster(tmp_path, extra_env=side_a_env())
    pair = MirrorPair(c)
    a_store = c.env()
    b_store = pair.store_b_env()
    assert a_store["POSTERN_MIRROR_ROLE"] == "master" and b_store["POSTERN_MIRROR_ROLE"] == "slave"
    for key in ("POSTERN_DATA", "POSTERN_NATS_URL", "POSTERN_IMAP_PORT", "POSTERN_POP3_PORT"):
        assert a_store[key] != b_store[key], key
    for key in ("POSTERN_STORE_OPS_PORT", "POSTERN_IMAP_PORT"):
        assert b_store[key] not in {a_store[key], str(c.smtp_port)}
    assert b_store["POSTERN_NATS_URL"] == pair.url_b != c.nats_url
    assert pair.imap() == [(NODE_A, c.imap_port), (NODE_B, pair.imap_b)]
    # before the links exist a mirror would go straight to the peer's NATS ...
    assert pair.mirror_env("mirror-a")["POSTERN_PEER_NATS_URL"] == pair.url_b
    # ... once they do, through them: each mirror its own, to the other side's NATS
    pair.links = {"mirror-a": LinkProxy(pair.nats_b.port), "mirror-b": LinkProxy(c.nats[0].port)}
    pair.links["mirror-a"].port, pair.links["mirror-b"].port = 1111, 2222
    ma, mb = pair.mirror_env("mirror-a"), pair.mirror_env("mirror-b")
    assert (ma["POSTERN_MIRROR_NODE"], ma["POSTERN_MIRROR_PEER"]) == (NODE_A, NODE_B)
    assert (mb["POSTERN_MIRROR_NODE"], mb["POSTERN_MIRROR_PEER"]) == (NODE_B, NODE_A)
    assert ma["POSTERN_NATS_URL"] == c.nats_url and mb["POSTERN_NATS_URL"] == pair.url_b
    assert ma["POSTERN_PEER_NATS_URL"].endswith(":1111")
    assert mb["POSTERN_PEER_NATS_URL"].endswith(":2222")
    assert ma["POSTERN_DATA"] == str(c.data) and mb["POSTERN_DATA"] == str(pair.data_b)
    assert ma["POSTERN_MIRROR_OPS_PORT"] != mb["POSTERN_MIRROR_OPS_PORT"]
    argv = pair.resync_argv()
    assert argv[1:3] == ["mirror", "resync"] and pair.url_b in argv and c.nats_url in argv


class Stores:
    """What each store shows over IMAP; a store in ``down`` does not answer."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[tuple[int, str | None], ...]] = {}
        self.down: set[str] = set()

    def read(
        self, store: str, host: str, port: int, accounts: list[tuple[str, str]]
    ) -> list[MailboxView]:
        if store in self.down:
            raise ConnectionRefusedError(store)
        msgs = self.held.get(store, ())
        return [MailboxView(store, accounts[0][0], "INBOX", 7, len(msgs) + 1, msgs)]


async def test_a_run_reads_both_stores_and_the_final_snapshot_is_all_or_none(
    tmp_path: Path,
) -> None:
    stores = Stores()
    c = Cluster(tmp_path, users={"u@rel.test": "pw"})
    run = Run(Context(tmp_path), "x", c, stores=[(NODE_A, 1), (NODE_B, 2)], read=stores.read)
    stores.held = {NODE_A: ((1, "m1"),), NODE_B: ()}
    stores.down = {NODE_B}
    assert not await run.take_snapshot()  # B down: what A showed is kept
    assert {v.store for v in run.snapshots[-1]} == {NODE_A}
    assert await run.take_snapshot([NODE_A])
    assert not await run._final_snapshot()  # B still down: no final snapshot
    assert len(run.snapshots) == 2
    stores.down = set()
    assert await run._final_snapshot()
    assert {v.store for v in run.snapshots[-1]} == {NODE_A, NODE_B}
    ledger = [Entry("m1", ("u@rel.test",), Outcome.ACKED, 250, "END")]
    report = check("x", ledger, run.snapshots, [name for name, _ in run.endpoints()])
    assert report.lost == 1 and report.divergence == 1 and not report.ok  # B lacks m1


def test_a_run_without_stores_reads_the_one_store(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    assert Run(Context(tmp_path), "x", c).endpoints() == [("store", c.imap_port)]
