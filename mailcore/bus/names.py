"""Every stream, subject, consumer, bucket and object store name, in one place."""

from __future__ import annotations

# Accepted mail for local recipients. Work-queue retention: a message leaves the stream
# when the store acks it, so the stream's size is the delivery backlog.
STREAM_INBOUND = "MAIL_INBOUND"
SUBJECT_INBOUND = "mail.inbound"
CONSUMER_DELIVERY = "store-delivery"

# Mail for remote recipients, consumed by the relay.
STREAM_OUTBOUND = "MAIL_OUTBOUND"
SUBJECT_OUTBOUND = "mail.outbound"
CONSUMER_RELAY = "relay"
# The relay's record of each outbound message: attempts, recipients done, last answer,
# next attempt (``mailctl queue list``); key = mail id.
KV_RELAY = "RELAY_QUEUE"

# Dead letters: accepted mail the store could not deliver (unknown recipient, over quota
# after the last attempt, a failure that outlasted every requeue, poison payloads), kept
# with the original frame until an operator retries or drops it (`mailctl queue dead`).
# One tiny file-storage stream whose only use is a write probe: can JetStream store now?
STREAM_PROBE = "POSTERN_PROBE"
SUBJECT_PROBE = "postern.probe"
STREAM_DEAD = "MAIL_DEAD"
SUBJECT_DEAD = "mail.dead"

# Bodies above the inline threshold (claim check).
OBJ_BODIES = "MAIL_BODIES"

# Domains, users, aliases, quotas, settings (no secrets: filters and relays read it).
KV_DIRECTORY = "DIRECTORY"
# The users' argon2id password hashes (mailcore/credentials.py): the store, the mirror and
# mailctl only.
KV_CREDENTIALS = "CREDENTIALS"
# Requests to the store's auth responder (services/store/auth_rpc.py, mailcore/bus/authrpc.py):
# check a user's password (the filters' SMTP AUTH), change it (the webmail's settings).
SUBJECT_AUTH_VERIFY = "postern.auth.verify"
SUBJECT_AUTH_PASSWORD = "postern.auth.password"  # noqa: S105 - a subject, not a secret

# Webmail sessions, so any webmail node serves any user.
KV_SESSIONS = "SESSIONS"
# Failed-login counters shared by every filter and store (mailcore.loginguard).
KV_AUTH_FAILURES = "AUTH_FAILURES"
AUTH_FAILURE_WINDOW = 900.0  # seconds an entry lives after its last failure

# Ordered change records for the peer store.
STREAM_MIRROR = "MIRROR_CHANGES"
SUBJECT_MIRROR = "mirror.changes"
# Per-peer mirror stream on the sending side's NATS: MIRROR_TO_<PEER>, subject mirror.to.<peer>
STREAM_MIRROR_TO = "MIRROR_TO_"
SUBJECT_MIRROR_TO = "mirror.to."
OBJ_MIRROR_BODIES = "MIRROR_BODIES"  # bodies above 512 KiB, on the sending side's NATS
# The store's replica requests, for its own mirror process (services/store/replica_rpc.py)
SUBJECT_MIRROR_COMMITTED = "postern.mirror.committed"  # a peer committed records (sync)
SUBJECT_MIRROR_NUDGE = "postern.mirror.nudge"  # the store asks its mirror to read now
# the store committed changes to these accounts (a JSON list of ids): its mirror's source
# reads them at once instead of at its next poll (services/store/mirror_changed.py)
SUBJECT_MIRROR_CHANGED = "postern.mirror.changed"
# synchronous mirroring: the store took these inbound messages, its mirror peer too
# ({"ids": [message id, ...]}), for a filter that answers 250 only then
SUBJECT_DELIVERED = "postern.delivered"
SUBJECT_REPLICA = "postern.replica."  # + accounts | read | confirm | apply | body
HDR_MIRROR_ACCOUNT = "Postern-Mirror-Account"
HDR_MIRROR_RECORD = "Postern-Mirror-Record"  # the journal row, JSON
HDR_MIRROR_BODY = "Postern-Mirror-Body"  # "inline", "object:<name>" or "none"
HDR_MIRROR_ORIGIN = "Postern-Mirror-Origin"  # the peer the record came from
HDR_MIRROR_REPAIR = "Postern-Mirror-Repair"  # a resync's forced write (services/store/repair_rpc)
HDR_MIRROR_TRASH = "Postern-Mirror-Trash"  # "1": a peer's expunge is kept in Trash here
HDR_MIRROR_RESOLVE = "Postern-Mirror-Resolve"  # split brain: "resolver" or "defer"
HDR_RELAYED_FROM = "Postern-Relayed-From"  # a postern.delivered notice a mirror carried over

# Header carrying the schema version of a bus message.
HDR_SCHEMA = "Postern-Schema"
# JetStream's de-duplication header: equal ids within the window are stored once.
HDR_MSG_ID = "Nats-Msg-Id"
# How often a message was published again after running out of delivery attempts.
HDR_REQUEUES = "Postern-Requeues"
# On an outbound frame published again by `mailctl queue retry|bounce`: the relay has a
# record of it (RELAY_QUEUE) to read first.
HDR_RELAY_STATE = "Postern-Relay-State"
# Dead-letter headers: why, for which recipients, which mail, when.
HDR_DEAD_REASON = "Postern-Dead-Reason"
HDR_DEAD_RECIPIENTS = "Postern-Dead-Recipients"  # JSON list of addresses
HDR_DEAD_MESSAGE_ID = "Postern-Dead-Message-Id"
HDR_DEAD_TIME = "Postern-Dead-Time"  # RFC 3339, UTC
HDR_DEAD_DETAIL = "Postern-Dead-Detail"
HDR_DEAD_SOURCE_SEQ = "Postern-Dead-Source-Seq"  # the inbound stream sequence it came from

# Requests to the store (NATS request/reply, no stream): remove a user and erase their mail.
SUBJECT_STORE_PURGE = "postern.admin.store.purge"
