"""Who may do what on NATS: one user per service, each allowed only the subjects it needs.

A NATS user's permissions are two allow lists of subjects, one for publishing and one for
subscribing; everything else is refused by the server with a permissions violation. The
JetStream API is subjects too (``$JS.API.STREAM.INFO.<stream>``, ``$JS.API.CONSUMER.MSG.NEXT
.<stream>.<consumer>``, ``$JS.ACK.<stream>.<consumer>.…``, ``$KV.<bucket>.<key>``,
``$O.<bucket>.…``), so "may read the inbound mail" is "may ask ``store-delivery`` for its next
message and ack it".

Replies come to an inbox of the user's own (``_INBOX_<user>.…``, set with nats-py's
``inbox_prefix``), so no service can subscribe to the answers meant for another: a filter
cannot read the store's replica replies or the KV watches of another service.

The roles (services.ctl.natsauth writes them into the server's configuration):

* ``filter``: publishes mail (``mail.inbound``, ``mail.outbound``), writes claim-checked
  bodies (without reading them: mailcore.bus.bodyput), reads the directory (recipients),
  asks the store to check SMTP AUTH passwords (``postern.auth.verify``), counts failed
  logins, writes the disk probe. It cannot consume any stream, read sessions, read the
  password hashes (``CREDENTIALS``), call the store otherwise, or read or purge bodies.
* ``relay``: consumes ``MAIL_OUTBOUND`` through the ``relay`` durable, keeps RELAY_QUEUE,
  reads bodies, hands local recipients and DSNs back to ``mail.inbound``.
* ``store``: consumes ``MAIL_INBOUND`` through ``store-delivery``, dead-letters, answers the
  mirror's replica requests and ``mailctl``'s purge, reads and removes bodies, reads its
  mirror role, reads and writes the password hashes (``CREDENTIALS``) and answers the
  password checks and changes (``postern.auth.*``).
* ``webmail``: the SESSIONS bucket and the failed-login counters, asks the store to change
  a password (``postern.auth.password``); nothing of the mail, no hashes.
* ``mirror``: its own streams and buckets (``MIRROR_*``), the store's replica requests; on a
  peer's server the same user consumes ``MIRROR_TO_<its node>``; the roles bucket; the
  directory and the password hashes (it follows the peer's, so logins work after a
  failover); and, while its store is master, the peer's inbound
  mail through ``store-delivery`` (the hand-off), bodies included.
* ``mailctl``: everything (administration, declaring streams, ``mailctl up``'s own watch).
"""

from __future__ import annotations

from dataclasses import dataclass

from mailcore.bus import mirror as mirror_names
from mailcore.bus import names
from mailcore.bus.roles import KV_ROLE
from mailcore.bus.setup import DECLARED

ADMIN = "mailctl"
API = "$JS.API"


@dataclass(frozen=True, slots=True)
class Permissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    # may answer requests it received (publish to their reply subjects, once each): the
    # store's replica and purge RPC answer the mirror and mailctl
    allow_responses: bool = False


def inbox_prefix(user: str) -> str:
    """The reply subjects of ``user``'s connections (nats-py ``inbox_prefix``)."""
    return f"_INBOX_{user}"


def _stream_info(*streams: str) -> tuple[str, ...]:
    return tuple(f"{API}.STREAM.INFO.{s}" for s in streams)


def _declare(*streams: str) -> tuple[str, ...]:
    """Create and update ``streams`` (a service that owns them declares them itself)."""
    return tuple(f"{API}.STREAM.{op}.{s}" for s in streams for op in ("CREATE", "UPDATE", "INFO"))


def _reader(stream: str) -> tuple[str, ...]:
    """Read a stream the way KV watches, KV gets and object reads do: ephemeral ordered
    consumers (flow control included), direct and classic message gets."""
    return (
        f"{API}.STREAM.INFO.{stream}",
        f"{API}.STREAM.MSG.GET.{stream}",
        f"{API}.DIRECT.GET.{stream}",
        f"{API}.DIRECT.GET.{stream}.>",
        f"{API}.CONSUMER.CREATE.{stream}",
        f"{API}.CONSUMER.CREATE.{stream}.>",
        f"{API}.CONSUMER.INFO.{stream}.>",
        f"{API}.CONSUMER.DELETE.{stream}.>",
        f"{API}.CONSUMER.MSG.NEXT.{stream}.>",
        f"$JS.FC.{stream}.>",
        f"$JS.ACK.{stream}.>",
    )


def _kv(bucket: str, *, write: bool = True) -> tuple[str, ...]:
    """A KV bucket: gets, watches, and (``write``) puts and deletes."""
    return _reader("KV_" + bucket) + ((f"$KV.{bucket}.>",) if write else ())


def _objects(bucket: str, *, read: bool, write: bool, remove: bool = False) -> tuple[str, ...]:
    """An object store: chunks ``$O.<b>.C.<nuid>``, metadata ``$O.<b>.M.<name>``."""
    stream = "OBJ_" + bucket
    out: tuple[str, ...] = (f"{API}.STREAM.INFO.{stream}",)
    if read or remove:
        # get, and nats-py's delete, read the metadata with a message get, which can read
        # any message of the bucket: a writer that must not read uses mailcore.bus.bodyput
        out += (
            f"{API}.STREAM.MSG.GET.{stream}",
            f"{API}.DIRECT.GET.{stream}",
            f"{API}.DIRECT.GET.{stream}.>",
        )
    if read:
        # get subscribes by chunk subject and asks which stream holds it (names only)
        out += (*_reader(stream), f"{API}.STREAM.NAMES")
    if write or remove:
        out += (f"$O.{bucket}.>",)
    if remove:
        # deleting an object purges its chunks by subject
        out += (f"{API}.STREAM.PURGE.{stream}",)
    return out


def _durable(stream: str, consumer: str) -> tuple[str, ...]:
    """Bind and pull a durable consumer, ack its messages (``$JS.ACK`` carries the reply)."""
    return (
        f"{API}.STREAM.INFO.{stream}",
        f"{API}.CONSUMER.INFO.{stream}.{consumer}",
        f"{API}.CONSUMER.MSG.NEXT.{stream}.{consumer}",
        f"$JS.ACK.{stream}.{consumer}.>",
    )


# Every service checks at start that what it needs exists (mailcore.bus.setup).
_CHECK = (*_stream_info(*DECLARED), f"{API}.INFO")


def _role(
    user: str,
    publish: tuple[str, ...],
    subscribe: tuple[str, ...] = (),
    *,
    responds: bool = False,
) -> Permissions:
    return Permissions(
        publish=tuple(dict.fromkeys(_CHECK + publish)),
        subscribe=tuple(dict.fromkeys((inbox_prefix(user) + ".>", *subscribe))),
        allow_responses=responds,
    )


MIRROR_NODES = ("store-a", "store-b")
"""The mirror pair's node names by default (POSTERN_MIRROR_NODE, _PEER)."""


def _mirror_queues(nodes: tuple[str, ...]) -> tuple[str, ...]:
    """The ``MIRROR_TO_<NODE>`` streams and their ``mirror`` durable, for the mirror of
    each node: subject wildcards match whole tokens only, so every stream is named."""
    out: tuple[str, ...] = ()
    for node in nodes:
        stream = mirror_names.stream_name(node)
        out += _declare(stream) + _reader(stream) + (mirror_names.subject(node),)
        out += (
            f"{API}.CONSUMER.CREATE.{stream}.{mirror_names.CONSUMER}",
            f"{API}.CONSUMER.CREATE.{stream}.{mirror_names.CONSUMER}.>",
            f"{API}.CONSUMER.DURABLE.CREATE.{stream}.{mirror_names.CONSUMER}",
        )
    return out


def roles(mirror_nodes: tuple[str, ...] = MIRROR_NODES) -> dict[str, Permissions]:
    """Every Postern NATS user and its permissions (``mailctl`` may do everything).
    ``mirror_nodes``: the names of the stores a mirror may queue records for."""
    probe = (names.SUBJECT_PROBE, *_reader(names.STREAM_PROBE))
    return {
        ADMIN: Permissions(publish=(">",), subscribe=(">",)),
        "filter": _role(
            "filter",
            (
                names.SUBJECT_INBOUND,
                names.SUBJECT_OUTBOUND,
                *probe,
                *_kv(names.KV_DIRECTORY, write=False),
                # SMTP AUTH: the store checks the password; CREDENTIALS stays unreadable
                names.SUBJECT_AUTH_VERIFY,
                *_kv(names.KV_AUTH_FAILURES),
                # write only (mailcore.bus.bodyput): bodies are other people's mail
                *_objects(names.OBJ_BODIES, read=False, write=True),
            ),
            # synchronous mirroring: the store's word that it (and its peer) took the mail
            (names.SUBJECT_DELIVERED,),
        ),
        "relay": _role(
            "relay",
            (
                names.SUBJECT_INBOUND,
                names.SUBJECT_OUTBOUND,
                *_durable(names.STREAM_OUTBOUND, names.CONSUMER_RELAY),
                # a message it relays, read again by sequence (retries, `mailctl queue`)
                f"{API}.STREAM.MSG.GET.{names.STREAM_OUTBOUND}",
                f"{API}.DIRECT.GET.{names.STREAM_OUTBOUND}",
                f"{API}.DIRECT.GET.{names.STREAM_OUTBOUND}.>",
                # `mailctl queue retry` asks the consumer's floor; the relay reads it too
                *_kv(names.KV_RELAY),
                *_kv(names.KV_DIRECTORY, write=False),
                *_objects(names.OBJ_BODIES, read=True, write=True, remove=True),
            ),
        ),
        "store": _role(
            "store",
            (
                names.SUBJECT_INBOUND,
                names.SUBJECT_OUTBOUND,
                names.SUBJECT_DEAD,
                *_durable(names.STREAM_INBOUND, names.CONSUMER_DELIVERY),
                *_kv(names.KV_DIRECTORY, write=False),
                # the password hashes: IMAP, POP3 and the auth responder check them, a
                # password change (services/store/auth_rpc.py) writes one
                *_kv(names.KV_CREDENTIALS),
                *_kv(names.KV_AUTH_FAILURES),
                *_objects(names.OBJ_BODIES, read=True, write=False, remove=True),
                *_declare("OBJ_" + names.OBJ_MIRROR_BODIES),
                *_objects(names.OBJ_MIRROR_BODIES, read=True, write=True, remove=True),
                # its mirror role (mailcore.bus.roles): read each second, heartbeat
                *_declare("KV_" + KV_ROLE),
                *_kv(KV_ROLE),
                # synchronous mirroring (services.store.mirror_sync): "ship now", and the
                # word to the filters that the peer has the mail too
                names.SUBJECT_MIRROR_NUDGE,
                names.SUBJECT_DELIVERED,
                names.SUBJECT_MIRROR_CHANGED,  # its mirror ships at once (mirror_changed.py)
            ),
            (
                names.SUBJECT_REPLICA + ">",
                names.SUBJECT_STORE_PURGE,
                names.SUBJECT_MIRROR_COMMITTED,  # the peer's "committed" notices
                # the auth responder (services/store/auth_rpc.py): requests carry passwords,
                # so no other service may subscribe to them
                names.SUBJECT_AUTH_VERIFY,
                names.SUBJECT_AUTH_PASSWORD,
            ),
            responds=True,
        ),
        "webmail": _role(
            "webmail",
            (
                *_kv(names.KV_SESSIONS),
                *_kv(names.KV_AUTH_FAILURES),
                *probe,
                names.SUBJECT_AUTH_PASSWORD,  # the settings page's password change
            ),
        ),
        "mirror": _role(
            "mirror",
            (
                names.SUBJECT_REPLICA + ">",
                *_mirror_queues(mirror_nodes),
                *_declare("KV_" + mirror_names.KV_STATUS, "MIRROR_CONFLICTS"),
                *_kv(mirror_names.KV_STATUS),
                "mirror.conflicts",  # services.mirror.sink.SUBJECT_CONFLICTS
                *_declare("OBJ_" + names.OBJ_MIRROR_BODIES),
                *_objects(names.OBJ_MIRROR_BODIES, read=True, write=True, remove=True),
                # roles (mailcore.bus.roles): both sides' records, a newer promote taken
                *_declare("KV_" + KV_ROLE),
                *_kv(KV_ROLE),
                # the hand-off (services.mirror.handoff): the master's mirror pulls the
                # slave's inbound mail through the delivery consumer and publishes it here,
                # bodies copied from one MAIL_BODIES to the other
                *_durable(names.STREAM_INBOUND, names.CONSUMER_DELIVERY),
                names.SUBJECT_INBOUND,
                *_objects(names.OBJ_BODIES, read=True, write=True, remove=True),
                # the directory and the hashes follow the peer's (mailcore.bus.mirror_directory)
                *_kv(names.KV_DIRECTORY),
                *_kv(names.KV_CREDENTIALS),
                # synchronous mirroring: the sink tells the peer's store what it committed;
                # the master's store's word on inbound mail goes to the slave's filters
                # (services/mirror/notices.py)
                names.SUBJECT_MIRROR_COMMITTED,
                names.SUBJECT_DELIVERED,
            ),
            (names.SUBJECT_MIRROR_NUDGE, names.SUBJECT_MIRROR_CHANGED, names.SUBJECT_DELIVERED),
        ),
    }


SERVICE_USERS: dict[str, str] = {
    "filter": "filter",
    "relay": "relay",
    "store": "store",
    "webmail": "webmail",
    "mirror": "mirror",
    "mailctl": ADMIN,
}
"""The NATS user each service's settings section connects as under ``mailctl up``."""
