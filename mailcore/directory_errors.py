"""The directory's refusals: every one is a :class:`DirectoryError` whose message is fit for
an operator (``mailctl`` prints it as is)."""

from __future__ import annotations


class DirectoryError(Exception):
    """Base of every directory refusal; the message is fit for an operator."""


class NoSuchDomain(DirectoryError):
    pass


class NoSuchUser(DirectoryError):
    pass


class NoSuchAlias(DirectoryError):
    pass


class AlreadyExists(DirectoryError):
    pass


class DomainInUse(DirectoryError):
    pass


class InvalidName(DirectoryError):
    pass
