"""Webmail tests run against the real store's IMAP server (tests/services/store/imap)."""

from __future__ import annotations

from tests.services.store.imap.conftest import imap, make_imap

__all__ = ["imap", "make_imap"]
