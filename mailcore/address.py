"""Mail addresses as data: validation and the canonical form used as a directory key.

Domains compare case-insensitively (RFC 5321 §2.4); Postern also treats local parts
case-insensitively, as nearly every mail system does, so ``Bob@Example.org`` and
``bob@example.org`` are one mailbox. Internationalised local parts (RFC 6531) are allowed;
control characters, spaces and a second ``@`` never are.
"""

from __future__ import annotations

import re

MAX_LOCAL = 64  # RFC 5321 §4.5.3.1.1
MAX_DOMAIN = 255  # RFC 5321 §4.5.3.1.2
MAX_ADDRESS = 254  # RFC 5321 §4.5.3.1.3 path limit minus the angle brackets

_LOCAL_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+$")
_LABEL = re.compile(r"^(?!-)[a-z0-9\-\u0080-\U0010ffff]{1,63}(?<!-)$")


class InvalidAddress(ValueError):
    """Not an address Postern will store or route."""


def normalize_domain(domain: str) -> str:
    d = domain.strip().rstrip(".").lower()
    if not d or len(d) > MAX_DOMAIN:
        raise InvalidAddress(f"bad domain {domain!r}")
    labels = d.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise InvalidAddress(f"bad domain {domain!r}")
    return d


def _check_local(local: str, original: str) -> None:
    # RFC 5321 §4.1.2 dot-string: atoms separated by single dots.
    if not local or len(local.encode()) > MAX_LOCAL:
        raise InvalidAddress(f"bad local part in {original!r}")
    if not all(_LOCAL_ATOM.match(atom) for atom in local.split(".")):
        raise InvalidAddress(f"bad local part in {original!r}")


def normalize(address: str) -> str:
    """The canonical ``local@domain`` form, or :class:`InvalidAddress`."""
    a = address.strip()
    if a.startswith("<") and a.endswith(">"):
        a = a[1:-1]
    if a.count("@") != 1 or len(a.encode()) > MAX_ADDRESS:
        raise InvalidAddress(f"bad address {address!r}")
    local, domain = a.split("@")
    _check_local(local, address)
    return f"{local.lower()}@{normalize_domain(domain)}"


def split(address: str) -> tuple[str, str]:
    """``(local, domain)`` of a canonical address."""
    local, _, domain = address.rpartition("@")
    return local, domain


def without_tag(address: str) -> str | None:
    """``user@d`` for ``user+tag@d`` (plus-addressing), else None."""
    local, domain = split(address)
    base, plus, _tag = local.partition("+")
    if not plus or not base:
        return None
    return f"{base}@{domain}"
