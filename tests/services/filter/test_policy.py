"""Who may send what, against a real directory on NATS."""

from __future__ import annotations

import pytest

from services.filter import errors
from services.filter.policy import Policy
from tests.services.filter.conftest import ALIAS, ALICE, BOB, Accounts


@pytest.fixture
def policy(accounts: Accounts) -> Policy:
    return Policy(accounts.directory)


def test_local_recipients_resolve_to_users(policy: Policy) -> None:
    assert policy.route("Alice@Example.Test", authenticated=False).local == [ALICE]
    assert policy.route("bob+tag@example.test", authenticated=False).local == [BOB]
    assert policy.route(ALIAS, authenticated=False).local == [ALICE]


def test_unknown_local_recipient(policy: Policy) -> None:
    with pytest.raises(errors.UnknownRecipient):
        policy.route("nobody@example.test", authenticated=False)
    with pytest.raises(errors.UnknownRecipient):
        policy.route('"odd name"@example.test', authenticated=True)


def test_no_open_relay(policy: Policy) -> None:
    with pytest.raises(errors.RelayDenied):
        policy.route("someone@elsewhere.test", authenticated=False)
    with pytest.raises(errors.RelayDenied):
        policy.route("someone@[192.0.2.1]", authenticated=False)
    assert policy.route("Someone@Elsewhere.test", authenticated=True).remote == [
        "Someone@Elsewhere.test"  # a remote local part keeps its case
    ]


async def test_forwarding_alias_routes_remote(accounts: Accounts, policy: Policy) -> None:
    await accounts.directory.add_alias("team@example.test", [BOB, "ext@partner.test"])
    route = policy.route("team@example.test", authenticated=False)
    assert route.local == [BOB] and route.remote == ["ext@partner.test"]


async def test_postmaster_without_domain(accounts: Accounts, policy: Policy) -> None:
    with pytest.raises(errors.UnknownRecipient):
        policy.route("postmaster", authenticated=False)
    await accounts.directory.add_alias("postmaster@example.test", [ALICE])
    assert policy.route("postmaster", authenticated=False).local == [ALICE]


def test_sender_ownership(accounts: Accounts, policy: Policy) -> None:
    alice = accounts.directory.user(ALICE)
    assert alice is not None
    policy.check_sender(alice, ALICE)
    policy.check_sender(alice, "ALICE+lists@example.test")
    policy.check_sender(alice, ALIAS)
    for other in (BOB, "", "alice@elsewhere.test", '"x y"@example.test'):
        with pytest.raises(errors.SenderNotOwned):
            policy.check_sender(alice, other)
    policy.check_sender(None, "anyone@anywhere.test")  # unauthenticated: not judged here
