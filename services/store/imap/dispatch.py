"""The command table: name → handler, the states it is valid in (RFC 3501 §6), and which
unsolicited updates may precede its tagged reply (RFC 3501 §7.4.1: no EXPUNGE during
FETCH, STORE or SEARCH; the UID forms may carry them)."""

from __future__ import annotations

from services.store.imap.handlers import (
    append,
    auth,
    compress,
    copy_move,
    expunge,
    fetch,
    idle,
    mailbox,
    misc,
    notify,
    quota,
    search,
    select,
    sort,
    status,
    store,
)
from services.store.imap.session import ANY, AUTH, NOT_AUTH, SELECTED, Spec, State

AUTH_ONLY = frozenset({State.AUTHENTICATED})

DISPATCH: dict[str, Spec] = {
    # any state (RFC 3501 §6.1)
    "CAPABILITY": Spec(misc.capability, ANY),
    "NOOP": Spec(misc.noop, ANY),
    "LOGOUT": Spec(misc.logout, ANY, updates="none"),
    "ID": Spec(misc.id_, ANY),
    # not authenticated (§6.2)
    "STARTTLS": Spec(auth.starttls, NOT_AUTH, updates="none"),
    "LOGIN": Spec(auth.login, NOT_AUTH),
    "AUTHENTICATE": Spec(auth.authenticate, NOT_AUTH),
    # authenticated (§6.3)
    "ENABLE": Spec(misc.enable, AUTH_ONLY),  # RFC 5161 §3.1
    "NAMESPACE": Spec(misc.namespace, AUTH),
    "SELECT": Spec(select.select, AUTH, updates="none"),
    "EXAMINE": Spec(select.select, AUTH, updates="none"),
    "CREATE": Spec(mailbox.create, AUTH),
    "DELETE": Spec(mailbox.delete, AUTH),
    "RENAME": Spec(mailbox.rename, AUTH),
    "SUBSCRIBE": Spec(mailbox.subscribe, AUTH),
    "UNSUBSCRIBE": Spec(mailbox.unsubscribe, AUTH),
    "LIST": Spec(mailbox.list_, AUTH),
    "LSUB": Spec(mailbox.list_, AUTH),
    "STATUS": Spec(status.status, AUTH),
    "APPEND": Spec(append.append, AUTH),
    "IDLE": Spec(idle.idle, AUTH),
    "GETQUOTA": Spec(quota.getquota, AUTH),
    "GETQUOTAROOT": Spec(quota.getquotaroot, AUTH),
    "SETQUOTA": Spec(quota.setquota, AUTH),
    "COMPRESS": Spec(compress.compress, AUTH, updates="none"),  # RFC 4978
    "NOTIFY": Spec(notify.notify, AUTH),  # RFC 5465 §3
    # selected (§6.4)
    "CHECK": Spec(select.check, SELECTED),
    "CLOSE": Spec(select.close, SELECTED, updates="none"),
    "UNSELECT": Spec(select.unselect, SELECTED, updates="none"),
    "EXPUNGE": Spec(expunge.expunge, SELECTED),
    "SEARCH": Spec(search.search, SELECTED, updates="no-expunge"),
    "FETCH": Spec(fetch.fetch, SELECTED, updates="no-expunge"),
    "STORE": Spec(store.store, SELECTED, updates="no-expunge"),
    "COPY": Spec(copy_move.copy, SELECTED),
    "MOVE": Spec(copy_move.copy, SELECTED),
    "UID SEARCH": Spec(search.search, SELECTED),
    "UID FETCH": Spec(fetch.fetch, SELECTED),
    "UID STORE": Spec(store.store, SELECTED),
    "UID COPY": Spec(copy_move.copy, SELECTED),
    "UID MOVE": Spec(copy_move.copy, SELECTED),
    "UID EXPUNGE": Spec(expunge.expunge, SELECTED),
    "SORT": Spec(sort.sort, SELECTED, updates="no-expunge"),  # RFC 5256 §3
    "UID SORT": Spec(sort.sort, SELECTED),
    "THREAD": Spec(sort.thread, SELECTED, updates="no-expunge"),  # RFC 5256 §4
    "UID THREAD": Spec(sort.thread, SELECTED),
    "CANCELUPDATE": Spec(sort.cancelupdate, SELECTED),  # RFC 5267 §4.3
}
