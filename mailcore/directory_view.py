"""The directory's in-memory copy: the records by name, look-ups, and address resolution.

No I/O: :class:`mailcore.directory.Directory` fills it from the watch of the KV bucket
(and from its own writes) and adds the writes and authentication. Reads are dictionary
look-ups, so they are cheap enough for every RCPT TO and every login.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mailcore import address as addr
from mailcore.directory_records import Alias, Domain, User, canonical_domain, parse_key

MAX_ALIAS_DEPTH = 8


@dataclass(slots=True)
class Resolution:
    """Where mail for one address goes: local users and remote (forwarded) addresses."""

    local: list[User] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.local or self.remote)


class DirectoryView:
    """Domains, users (also by account id) and aliases by canonical name; see the module
    docstring."""

    def __init__(self) -> None:
        self._domains: dict[str, Domain] = {}
        self._users: dict[str, User] = {}
        self._aliases: dict[str, Alias] = {}
        self._by_account: dict[str, User] = {}

    # --- keeping the copy ---------------------------------------------------------------
    def _replace_all(self, records: dict[str, tuple[str, Any]]) -> None:
        """Hold exactly ``records`` (decoded KV entries by key) and nothing else."""
        self._domains.clear()
        self._users.clear()
        self._aliases.clear()
        self._by_account.clear()
        for kind, record in records.values():
            self._apply(kind, record)

    def _apply(self, kind: str, record: Any) -> None:
        if kind == "domain":
            self._domains[record.name] = record
        elif kind == "user":
            old = self._users.get(record.address)
            if old is not None and old.password_hash != record.password_hash:
                self._user_changed(record.address)
            self._users[record.address] = record
            self._by_account[record.account_id] = record
        elif kind == "alias":
            self._aliases[record.address] = record

    def _forget(self, key: str) -> None:
        kind, name = parse_key(key)
        if kind == "domain":
            self._domains.pop(name, None)
        elif kind == "user":
            user = self._users.pop(name, None)
            if user is not None:
                self._by_account.pop(user.account_id, None)
                self._user_changed(name)
        elif kind == "alias":
            self._aliases.pop(name, None)

    def _user_changed(self, address: str) -> None:
        """Called when a user's password hash changes or the user goes; a no-op here."""

    # --- reads --------------------------------------------------------------------------
    def domain(self, name: str) -> Domain | None:
        try:
            return self._domains.get(addr.normalize_domain(name))
        except addr.InvalidAddress:
            return None

    def domains(self) -> list[Domain]:
        return sorted(self._domains.values(), key=lambda d: d.name)

    def is_local_domain(self, name: str) -> bool:
        return self.domain(name) is not None

    def user(self, address: str) -> User | None:
        try:
            return self._users.get(addr.normalize(address))
        except addr.InvalidAddress:
            return None

    def user_by_account(self, account_id: str) -> User | None:
        return self._by_account.get(account_id)

    def users(self, domain: str | None = None) -> list[User]:
        found = self._users.values()
        if domain is not None:
            d = canonical_domain(domain)
            found = [u for u in found if addr.split(u.address)[1] == d]  # type: ignore[assignment]
        return sorted(found, key=lambda u: u.address)

    def alias(self, address: str) -> Alias | None:
        try:
            return self._aliases.get(addr.normalize(address))
        except addr.InvalidAddress:
            return None

    def aliases(self, domain: str | None = None) -> list[Alias]:
        found: Iterable[Alias] = self._aliases.values()
        if domain is not None:
            d = canonical_domain(domain)
            found = [a for a in found if addr.split(a.address)[1] == d]
        return sorted(found, key=lambda a: a.address)

    def resolve(self, address: str) -> Resolution:
        """Expand an address: user, alias (recursively), plus-tag, then catch-all.

        An empty :class:`Resolution` means "no such recipient" (the filter answers 550).
        """
        result = Resolution()
        try:
            canonical = addr.normalize(address)
        except addr.InvalidAddress:
            return result
        self._expand(canonical, result, depth=0, seen=set())
        return result

    def _expand(self, address: str, result: Resolution, depth: int, seen: set[str]) -> None:
        if address in seen or depth > MAX_ALIAS_DEPTH:
            return
        seen.add(address)
        local_part, domain = addr.split(address)
        if domain not in self._domains:
            if depth > 0 and address not in result.remote:
                result.remote.append(address)
            return
        user = self._users.get(address)
        if user is not None and not user.disabled:
            if all(u.address != user.address for u in result.local):
                result.local.append(user)
            return
        alias = self._aliases.get(address)
        if alias is not None:
            for target in alias.targets:
                self._expand(target, result, depth + 1, seen)
            return
        base = addr.without_tag(address)
        if base is not None:
            before = len(result.local) + len(result.remote)
            self._expand(base, result, depth, seen)
            if len(result.local) + len(result.remote) > before:
                return
        catch_all = self._domains[domain].catch_all
        if catch_all and depth == 0 and local_part:
            self._expand(catch_all, result, depth + 1, seen)

    def addresses_of(self, user: User) -> set[str]:
        """The addresses ``user`` may send from: their own and every alias that reaches them."""
        own = {user.address}
        for alias in self._aliases.values():
            if any(u.address == user.address for u in self.resolve(alias.address).local):
                own.add(alias.address)
        return own
