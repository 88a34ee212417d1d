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

# Bodies above the inline threshold (claim check).
OBJ_BODIES = "MAIL_BODIES"

# Domains, users, aliases, quotas, settings.
KV_DIRECTORY = "DIRECTORY"

# Webmail sessions, so any webmail node serves any user.
KV_SESSIONS = "SESSIONS"

# Ordered change records for the peer store.
STREAM_MIRROR = "MIRROR_CHANGES"
SUBJECT_MIRROR = "mirror.changes"

# Header carrying the schema version of a bus message.
HDR_SCHEMA = "Postern-Schema"
# JetStream's de-duplication header: equal ids within the window are stored once.
HDR_MSG_ID = "Nats-Msg-Id"
