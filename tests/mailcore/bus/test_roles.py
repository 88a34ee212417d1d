"""Mirror role records (mailcore.bus.roles): the setting is read once, the record wins
after it, and a side that missed a promote is demoted by a master at a higher epoch."""

from __future__ import annotations

from mailcore.bus import roles
from mailcore.bus.connect import Bus
from mailcore.bus.roles import RoleRecord


def test_the_higher_epoch_decides() -> None:
    demoted = roles.reconcile(RoleRecord("master", 1, "store-a"), RoleRecord("master", 2))
    assert demoted is not None and (demoted.role, demoted.epoch, demoted.node) == (
        "slave",
        2,
        "store-a",
    )


def test_a_demoted_peer_does_not_promote_this_side() -> None:
    """The peer slave at a higher epoch is a promote of this side in progress: only the
    promote command, after the old master stopped and its records arrived, makes this
    side master (taking it here made both stores deliver at once, with clashing UIDs)."""
    assert roles.reconcile(RoleRecord("slave", 0, "store-b"), RoleRecord("slave", 3)) is None
    assert roles.reconcile(RoleRecord("master", 0, "store-b"), RoleRecord("slave", 3)) is None


def test_an_older_or_equal_peer_changes_nothing() -> None:
    own = RoleRecord("master", 2, "store-a")
    assert roles.reconcile(own, RoleRecord("master", 2)) is None
    assert roles.reconcile(own, RoleRecord("slave", 1)) is None
    assert roles.reconcile(own, None) is None


async def test_the_setting_is_written_once_then_the_record_wins(bus: Bus) -> None:
    await (await roles.bucket(bus.js)).purge(roles.KEY_ROLE)
    first = await roles.ensure(bus.js, "master", "store-a")
    assert (first.role, first.epoch) == ("master", 0)
    await roles.write(bus.js, "slave", 1, "store-a")  # a promote of the peer
    again = await roles.ensure(bus.js, "master", "store-a")  # a restart, setting unchanged
    assert (again.role, again.epoch) == ("slave", 1)


async def test_heartbeat(bus: Bus) -> None:
    await roles.write_beat(bus.js, True, 4)
    beat = await roles.read_beat(bus.js)
    assert beat is not None and beat.consuming and beat.epoch == 4 and beat.alive
