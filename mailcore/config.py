"""Typed settings for every service.

Settings come, highest priority first, from keyword arguments, environment variables
(prefix ``POSTERN_``, e.g. ``POSTERN_SMTP_PORT=2525``), an optional TOML file named by
``POSTERN_CONFIG`` (top-level keys for every service, a ``[filter]``/``[store]``/… table
for one service), and the defaults below.

A bad value stops the service at start with one line that names the setting
(:func:`load_settings`).
"""

from __future__ import annotations

import os
import socket
import sys
import tomllib
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "POSTERN_"

Port = Annotated[int, Field(ge=0, le=65535)]
"""A TCP port; 0 switches a listener off."""

LogLevel = Literal["debug", "info", "warning", "error", "critical"]
PlaintextAuth = Literal["never", "loopback", "always"]


class ConfigFileError(Exception):
    """The TOML file named by POSTERN_CONFIG cannot be read."""


class _TomlSource(PydanticBaseSettingsSource):
    """Reads POSTERN_CONFIG: top-level keys, then the service's own table over them."""

    def __init__(self, settings_cls: type[BaseSettings], section: str) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] = {}
        path = os.environ.get(ENV_PREFIX + "CONFIG")
        if not path:
            return
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigFileError(f"POSTERN_CONFIG={path}: {exc}") from exc
        self._data = {k: v for k, v in raw.items() if not isinstance(v, dict)}
        table = raw.get(section)
        if isinstance(table, dict):
            self._data.update(table)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


def _ops_port(service: str, default: int) -> Any:
    """Each service's ops port: ``POSTERN_<SERVICE>_OPS_PORT``, else ``POSTERN_OPS_PORT``."""
    return Field(
        default=default,
        ge=0,
        le=65535,
        validation_alias=AliasChoices(
            f"{ENV_PREFIX}{service.upper()}_OPS_PORT", f"{ENV_PREFIX}OPS_PORT", "ops_port"
        ),
    )


def default_hostname() -> str:
    """This host's name for greetings and headers: its FQDN, else the plain host name
    (``socket.getfqdn()`` says ``localhost`` on many machines). Services warn when the
    name has no dot (:func:`hostname_warning`)."""
    fqdn = socket.getfqdn()
    if "." in fqdn and not fqdn.startswith("localhost"):
        return fqdn
    return socket.gethostname() or fqdn


def hostname_warning(hostname: str) -> str | None:
    """Why ``hostname`` is a poor name for a mail host (None when it is fine)."""
    if "." in hostname and not hostname.startswith("localhost"):
        return None
    return (
        f"POSTERN_HOSTNAME is {hostname!r}, not a fully qualified name: greetings, Received "
        "and Authentication-Results will carry it; set POSTERN_HOSTNAME=mail.example.org"
    )


class CommonSettings(BaseSettings):
    """Settings every service shares."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", validate_default=True, populate_by_name=True
    )
    service_name: ClassVar[str] = "common"

    data: Path = Field(
        default=Path("var"),
        validation_alias=AliasChoices("POSTERN_DATA", "POSTERN_DATA_DIR", "data"),
        description="data directory (NATS store, mail store, certificates)",
    )
    nats_url: str = "nats://127.0.0.1:4222"
    nats_user: str | None = Field(
        default=None,
        description="this service's NATS user (its permissions: docs/security.md); "
        "mailctl up sets one per service",
    )
    nats_password: str | None = None
    nats_password_file: Path | None = Field(
        default=None,
        description="file holding the NATS password (instead of POSTERN_NATS_PASSWORD; "
        "compose mounts one per service)",
    )
    nats_tls_ca: Path | None = Field(
        default=None,
        description="CA file the NATS server's certificate is checked against; set it (or "
        "a client certificate) to talk TLS to NATS",
    )
    nats_tls_cert: Path | None = Field(
        default=None, description="client certificate for NATS (when the server verifies them)"
    )
    nats_tls_key: Path | None = Field(default=None, description="key of POSTERN_NATS_TLS_CERT")
    log_level: LogLevel = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    hostname: str = Field(default_factory=default_hostname)
    listen_host: str = "127.0.0.1"
    ops_host: str = "127.0.0.1"
    ops_port: Port = 0
    listen_backlog: Annotated[int, Field(gt=0)] = Field(
        default=1024,
        description="listen() backlog of every SMTP, IMAP and POP3 port (the kernel caps it "
        "at net.core.somaxconn)",
    )
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # JetStream limits: a full disk would switch JetStream off for the whole server, so
    # every stream has a byte budget (see mailcore.bus.setup).
    inbound_max_bytes: Annotated[int, Field(gt=0)] = 4 * 1024**3
    outbound_max_bytes: Annotated[int, Field(gt=0)] = 1024**3
    bodies_max_bytes: Annotated[int, Field(gt=0)] = 8 * 1024**3
    mirror_max_bytes: Annotated[int, Field(gt=0)] = 1024**3
    dead_max_bytes: Annotated[int, Field(gt=0)] = Field(
        default=1024**3,
        description="byte budget of the dead-letter stream MAIL_DEAD (full: new dead letters "
        "are refused and the mail stays on the inbound stream)",
    )
    credentials_max_bytes: Annotated[int, Field(gt=0)] = Field(
        default=16 * 1024**2,
        description="byte budget of the CREDENTIALS bucket, the users' password hashes "
        "(about 300 bytes a user; full: adding a user or changing a password is refused). "
        "It counts against JetStream's share kept for KV buckets (mailctl up: a tenth)",
    )
    stream_replicas: Annotated[int, Field(ge=1, le=5)] = 1
    login_max_failures: Annotated[int, Field(gt=0)] = Field(
        default=10,
        description="failed logins for one account from one client address (SMTP AUTH, IMAP, "
        "POP3, webmail together, 15 minutes) before that address may not try that account",
    )
    login_max_failures_per_address: Annotated[int, Field(gt=0)] = Field(
        default=30,
        description="failed logins from one client address for any accounts (15 minutes) "
        "before it may not try at all; a correct password from another address always works",
    )
    outbound_max_age: Annotated[float, Field(gt=0)] = Field(
        default=6 * 86400.0,
        description="seconds mail may stay on MAIL_OUTBOUND (keep it above relay_max_age: "
        "the relay bounces expired mail before the stream would drop it)",
    )
    delivery_ack_wait: Annotated[float, Field(gt=0)] = Field(
        default=60.0,
        description="seconds the store may hold a fetched inbound message unacknowledged "
        "before JetStream hands it out again (after a store crash, what it fetched comes back "
        "after this long; a redelivery of delivered mail is recognised, never a second copy)",
    )
    relay_ack_wait: Annotated[float, Field(gt=0)] = Field(
        default=60.0,
        description="seconds a relay may hold an outbound message without a sign of life "
        "before another relay gets it (a relay reports progress every third of it)",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        section = getattr(settings_cls, "service_name", "common")
        return (init_settings, env_settings, _TomlSource(settings_cls, section))

    @property
    def cert_path(self) -> Path:
        return self.tls_cert or self.data / "tls" / "cert.pem"

    @property
    def key_path(self) -> Path:
        return self.tls_key or self.data / "tls" / "key.pem"


class FilterSettings(CommonSettings):
    """The SMTP filter node."""

    service_name: ClassVar[str] = "filter"

    ops_port: Port = _ops_port("filter", 9101)
    smtp_port: Port = 2525
    submission_port: Port = 2587
    submissions_port: Port = 2465
    # PROXY-protocol-only listeners for use behind HAProxy; 0 = off.
    proxy_smtp_port: Port = 0
    proxy_submission_port: Port = 0
    proxy_submissions_port: Port = 0
    max_message_size: Annotated[int, Field(gt=0)] = 50_000_000
    max_recipients: Annotated[int, Field(gt=0)] = 100
    max_connections_per_ip: Annotated[int, Field(gt=0)] = 20
    max_bad_commands: Annotated[int, Field(gt=0)] = 10
    command_timeout: Annotated[float, Field(gt=0)] = 300.0
    session_timeout: Annotated[float, Field(gt=0)] = 1800.0
    auth_fail_delay: Annotated[float, Field(ge=0)] = 2.0
    auth_max_failures_per_ip: Annotated[int, Field(gt=0)] = 10
    auth_timeout: Annotated[float, Field(gt=0)] = Field(
        default=10.0,
        description="seconds SMTP AUTH waits for the store to check a password (the hashes "
        "are the store's); without an answer the client gets 454 4.7.0 and may retry",
    )
    spamd_enabled: bool = True
    spamd_host: str = "127.0.0.1"
    spamd_port: Port = 783
    spamd_socket: Path | None = None
    spamd_fail_open: bool = False
    clamd_enabled: bool = True
    clamd_host: str = "127.0.0.1"
    clamd_port: Port = 3310
    clamd_socket: Path | None = None
    clamd_fail_open: bool = False
    scan_timeout: Annotated[float, Field(gt=0)] = 30.0
    spam_tag_score: float = 5.0
    spam_reject_score: float = 10.0
    handoff_timeout: Annotated[float, Field(gt=0)] = 10.0
    handoff_patience: Annotated[float, Field(ge=0, le=100)] = Field(
        default=60.0,
        description="seconds a publish without PubAck is retried with the same Nats-Msg-Id "
        "before the client gets 451 (inside the streams' 120 s duplicate window, and the "
        "sender's 10 minutes for the reply to DATA, RFC 5321 §4.5.3.2)",
    )
    handoff_sync_timeout: Annotated[float, Field(ge=0, le=300)] = Field(
        default=0.0,
        description="synchronous mirroring (docs/mirror.md): after the bus took mail for local "
        "recipients, wait up to this many seconds for the store to take it (a store in "
        "synchronous mode, POSTERN_MIRROR_SYNC_PEER, says so only once its mirror peer "
        "committed it too) before answering 250; then 250 anyway, logged and counted; "
        "0: 250 at the bus's PubAck",
    )
    # Above this the body goes to the Object Store (claim check); NATS max_payload is 1 MiB.
    inline_body_max: Annotated[int, Field(gt=0, le=900 * 1024)] = 512 * 1024
    # Fraction of the inbound stream's byte budget above which new mail gets 452 4.3.1.
    inbound_high_water: Annotated[float, Field(gt=0, le=1)] = 0.9
    allow_plaintext_auth: PlaintextAuth = "never"
    auth_failure_window: Annotated[float, Field(gt=0)] = Field(
        default=900.0, description="seconds over which failed logins per IP are counted"
    )
    spamd_max_size: Annotated[int, Field(gt=0)] = Field(
        default=512_000, description="larger messages skip spamd (as spamc's -s limit does)"
    )
    scan_authenticated: bool = Field(
        default=False, description="also send authenticated submissions to spamd"
    )
    dkim_verify: bool = Field(
        default=True, description="check DKIM signatures of inbound mail (DNS TXT lookups)"
    )
    proxy_trusted_networks: str = Field(
        default="127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7",
        description="comma-separated networks whose PROXY headers the proxy_* ports accept",
    )


class StoreSettings(CommonSettings):
    """The store: delivery, IMAP, POP3."""

    service_name: ClassVar[str] = "store"

    ops_port: Port = _ops_port("store", 9102)
    imap_port: Port = 2143
    imaps_port: Port = 2993
    pop3_port: Port = 2110
    pop3s_port: Port = 2995
    pop3_idle_timeout: Annotated[float, Field(ge=600)] = Field(
        default=600.0, description="POP3 autologout, seconds (RFC 1939 §3: at least 600)"
    )
    pop3_max_bad_commands: Annotated[int, Field(gt=0)] = Field(
        default=10, description="unknown or malformed POP3 commands before disconnecting"
    )
    allow_plaintext_auth: PlaintextAuth = "never"
    max_message_size: Annotated[int, Field(gt=0)] = 50_000_000
    imap_idle_timeout: Annotated[float, Field(gt=0)] = 1800.0
    write_timeout: Annotated[float, Field(gt=0)] = Field(
        default=300.0,
        description="seconds an IMAP/POP3 client may leave a response unread before the "
        "connection is dropped (and a POP3 maildrop lock released)",
    )
    imap_search_timeout: Annotated[float, Field(gt=0)] = Field(
        default=120.0,
        description="seconds a SEARCH that reads messages (BODY, TEXT, other headers) may "
        "take, waiting for its turn included, before it answers NO [LIMIT]",
    )
    imap_search_scans: Annotated[int, Field(gt=0)] = Field(
        default=2,
        description="searches reading messages that run at once server-wide (one per user)",
    )
    max_connections_per_user: Annotated[int, Field(gt=0)] = 50
    max_connections: Annotated[int, Field(gt=0)] = Field(
        default=5000,
        description="IMAP and POP3 connections open at once server-wide; one more is greeted "
        "with * BYE [UNAVAILABLE] / -ERR [SYS/TEMP] and closed",
    )
    login_timeout: Annotated[float, Field(gt=0)] = Field(
        default=60.0,
        description="seconds an IMAP or POP3 connection may stay idle before it has logged "
        "in (RFC 9051 §5.4 allows a short pre-authentication timeout)",
    )
    max_connections_per_ip: Annotated[int, Field(gt=0)] = 100
    auth_fail_delay: Annotated[float, Field(ge=0)] = 2.0
    delivery_batch: Annotated[int, Field(gt=0, le=4096)] = 256
    delivery_max_deliver: Annotated[int, Field(gt=0)] = 20
    delivery_max_requeues: Annotated[int, Field(ge=0)] = Field(
        default=5,
        description="times a message failing on every attempt is published again with fresh "
        "attempts before it is dead-lettered (reason failed)",
    )
    delivery_unknown_attempts: Annotated[int, Field(gt=0)] = Field(
        default=5,
        description="attempts for a recipient the directory does not resolve before the mail "
        "for it is dead-lettered (reason unknown_recipient)",
    )
    journal_reader_max_behind: Annotated[int, Field(gt=0)] = Field(
        default=5_000_000,
        description="journal records a reader (the mirror) may lag behind an account before "
        "it is told to resync and no longer holds records back",
    )
    journal_reader_max_age: Annotated[float, Field(gt=0)] = Field(
        default=30 * 86400.0,
        description="seconds a journal reader with records waiting may go without confirming "
        "before it is told to resync",
    )
    fsync: bool = True
    fsync_flags: bool = Field(
        default=True,
        description="with fsync on, IMAP flag and keyword changes (STORE) wait for the disk "
        "like every other write; false: they commit without (SQLite WAL, synchronous=NORMAL; "
        "Dovecot's mail_fsync=optimized does the same), on the event loop when the account's "
        "writer thread is idle, so a power cut may undo the flag changes made since the last "
        "synced commit; messages, expunges and mailbox changes stay durable. Before turning it "
        "off on a mirrored store read docs/storage.md, Durability",
    )
    store_writers: Annotated[int, Field(ge=1, le=64)] = Field(
        default=4,
        description="writer threads per store process: each account's writes run on one of "
        "them, in order; writes to accounts on different threads commit (and wait for the "
        "disk) side by side instead of queueing behind one another's fsync",
    )
    imap_workers: Annotated[int, Field(ge=1, le=64)] = Field(
        default=1,
        description="processes serving IMAP: 1 serves it in the store process; N > 1 adds N-1 "
        "worker processes on the same ports (SO_REUSEPORT) and account files, told of each "
        "other's commits (IDLE stays prompt); delivery, POP3 and admin stay in the store "
        "process; connection caps count per process. One per CPU core uses every core",
    )
    mirror_changed_notices: bool | None = Field(
        default=None,
        description="after each commit, tell the mirror process which accounts changed "
        "(postern.mirror.changed), so it ships them at once instead of at its next journal "
        "poll (POSTERN_MIRROR_POLL_INTERVAL); unset: from the first time a mirror asks "
        "this store for its journal (a store without a mirror publishes nothing); true: "
        "from the start; false: never",
    )
    mirror_sync_peer: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9_-]{0,30}$",
        description="synchronous mirroring: a delivery is acked to the bus, and an IMAP "
        "write answered OK, only once this peer's mirror committed it too (docs/mirror.md); "
        "unset: asynchronous",
    )
    mirror_sync_timeout: Annotated[float, Field(gt=0)] = Field(
        default=5.0,
        description="seconds a synchronous write waits for the peer before it is answered "
        "anyway (asynchronous fallback, reported in status and metrics)",
    )
    webmail_trusted_networks: str = Field(
        default="127.0.0.0/8,::1/128",
        description="comma-separated networks whose IMAP ID x-originating-ip (RFC 2971) the "
        "store believes: the webmail nodes; that address then keys the login throttle and logs",
    )
    delivery_min_free_bytes: Annotated[int, Field(ge=0)] = Field(
        default=256 * 1024**2,
        description="delivery pauses (and /healthz reports storage unhealthy) when less than "
        "this is free on the store's file system; it resumes once twice this is free",
    )
    mirror_role: Literal["", "master", "slave"] = Field(
        default="",
        description="role in a mirrored pair (docs/mirror.md): master takes inbound mail, "
        "slave leaves it to the master; only the first start reads it, then the role "
        "record on NATS (mailctl mirror promote) wins; empty: no pair, always take it",
    )
    mirror_follower: bool = Field(
        default=False,
        description="this store is a mirror's read-only follower (docs/mirror.md; set the "
        "same on its mirror): it takes no inbound mail, and IMAP/POP3 clients may read but "
        "not change anything (NO [READ-ONLY]/[CANNOT], -ERR [SYS/PERM])",
    )


class RelaySettings(CommonSettings):
    """The outbound relay, beside every filter node: delivers MAIL_OUTBOUND by SMTP."""

    service_name: ClassVar[str] = "relay"

    ops_port: Port = _ops_port("relay", 9105)
    relay_routes: dict[str, str] = Field(
        default_factory=dict,
        description='static routes overriding MX lookup, JSON: {"example.org": "host:port"}',
    )
    relay_smarthost: str | None = Field(
        default=None, description="host:port every other domain's mail goes through"
    )
    relay_smarthost_user: str | None = None
    relay_smarthost_password: str | None = None
    relay_smarthost_tls: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="smarthost TLS: starttls (required), tls (implicit), none",
    )
    relay_smarthost_ca: Path | None = Field(
        default=None, description="CA bundle the smarthost's certificate is checked against"
    )
    relay_mx_port: Port = Field(default=25, description="port of the MX hosts")
    relay_retry_schedule: list[float] = Field(
        default=[60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0],
        description="seconds before each retry after a temporary failure (the last repeats)",
    )
    relay_max_age: Annotated[float, Field(gt=0)] = Field(
        default=5 * 86400.0, description="seconds of retries before mail is bounced (expired)"
    )
    relay_delay_warning: Annotated[float, Field(gt=0)] = Field(
        default=4 * 3600.0, description="seconds after which the sender gets a delay warning"
    )
    relay_concurrency: Annotated[int, Field(gt=0)] = Field(
        default=64, description="messages one relay process works on at once"
    )
    relay_destination_concurrency: Annotated[int, Field(gt=0)] = Field(
        default=8, description="SMTP connections one relay opens to one destination at once"
    )
    relay_connect_timeout: Annotated[float, Field(gt=0)] = 30.0
    relay_command_timeout: Annotated[float, Field(gt=0)] = Field(
        default=300.0, description="seconds for one SMTP reply (RFC 5321 §4.5.3.2)"
    )
    relay_dkim: bool = Field(default=True, description="DKIM-sign mail of domains with a key")


class WebmailSettings(CommonSettings):
    """A webmail node: HTTP in front, IMAP to the store behind."""

    service_name: ClassVar[str] = "webmail"

    ops_port: Port = _ops_port("webmail", 9103)
    http_port: Port = 8080
    imap_host: str = "127.0.0.1"
    imap_port: Port = 2143
    imap_tls: Literal["none", "implicit"] = Field(
        default="none", description="how to reach the store: plain (loopback) or IMAPS"
    )
    submission_host: str = "127.0.0.1"
    submission_port: Port = 2587
    submission_starttls: bool = Field(
        default=True, description="STARTTLS before AUTH on the filters' submission port"
    )
    upstream_ca: Path | None = Field(
        default=None,
        description="CA file that signs the store's and filters' certificates (default: the "
        "data directory's self-signed certificate when present, else the system's CAs)",
    )
    webmail_session_key: str | None = Field(
        default=None,
        description="32 bytes, URL-safe base64: seals the IMAP credential in the session "
        "record; every webmail node must share it (default: made once in <data>/webmail)",
    )
    webmail_session_idle: Annotated[float, Field(gt=0)] = Field(
        default=7200.0, description="seconds without a request after which a session ends"
    )
    webmail_session_max_age: Annotated[float, Field(gt=0)] = Field(
        default=7 * 86400.0, description="seconds after login after which a session ends"
    )
    webmail_imap_idle: Annotated[float, Field(gt=0)] = Field(
        default=300.0, description="seconds a pooled IMAP connection may sit unused"
    )
    auth_fail_delay: Annotated[float, Field(ge=0)] = Field(
        default=2.0,
        description="seconds before a failed webmail login is answered, doubling with each "
        "failure (the shared policy: POSTERN_LOGIN_MAX_FAILURES, _PER_ADDRESS)",
    )
    webmail_forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description="proxies whose X-Forwarded-For/-Proto the webmail believes (uvicorn)",
    )
    webmail_page_size: Annotated[int, Field(gt=0, le=500)] = 50
    webmail_workers: Annotated[int, Field(ge=0, le=64)] = Field(
        default=0,
        description="processes serving this node's HTTP port: 0 = one per CPU core (at most "
        "4); 1 = the service process alone; N > 1 adds N-1 worker processes on the same "
        "port (SO_REUSEPORT: the kernel spreads new connections over them), each with its own "
        "NATS connection and IMAP pool; sessions stay in the SESSIONS bucket, so any process "
        "serves any request; the ops port's metrics are the service process's own",
    )
    webmail_spamd_enabled: bool = Field(
        default=True, description="teach spamd (TELL) when a user marks spam / not spam"
    )
    webmail_spamd_host: str = "127.0.0.1"
    webmail_spamd_port: Port = 783


class MirrorSettings(CommonSettings):
    """The mirror: keeps a peer store live and identical."""

    service_name: ClassVar[str] = "mirror"

    ops_port: Port = _ops_port("mirror", 9104)
    peer_nats_url: str | None = Field(
        default=None,
        description="the peer store's NATS (its mirror stream to this store); unset: the "
        "mirror only queues this store's records for the peer",
    )
    mirror_node: str = Field(
        default="store-a",
        pattern=r"^[a-z0-9][a-z0-9_-]{0,30}$",
        description="this store's name in the pair (the peer's stream to us is named after it)",
    )
    mirror_peer: str = Field(
        default="store-b",
        pattern=r"^[a-z0-9][a-z0-9_-]{0,30}$",
        description="the peer store's name: reader mirror:<peer>, stream MIRROR_TO_<PEER>",
    )
    peer_nats_creds: Path | None = Field(
        default=None, description="NATS credentials file for the peer's server"
    )
    peer_nats_user: str | None = None
    peer_nats_password: str | None = None
    peer_nats_password_file: Path | None = Field(
        default=None, description="file holding the peer NATS password (compose mounts one)"
    )
    peer_tls_ca: Path | None = Field(default=None, description="CA file: TLS to the peer")
    peer_tls_cert: Path | None = Field(default=None, description="client certificate (mTLS)")
    peer_tls_key: Path | None = Field(default=None, description="client key (mTLS)")
    mirror_stream_max_bytes: Annotated[int, Field(ge=1024 * 1024)] = Field(
        default=10 * 1024**3,
        description="disk the queue for the peer may use (MIRROR_TO_<PEER>, file storage); "
        "when full, new records wait in the journal",
    )
    mirror_poll_interval: Annotated[float, Field(gt=0)] = Field(
        default=1.0,
        description="seconds between full journal reads (every account) when nothing is "
        "new; the store's change notices (POSTERN_MIRROR_CHANGED_NOTICES) wake the mirror "
        "for the accounts that changed in between",
    )
    mirror_repair_interval: Annotated[float, Field(ge=0)] = Field(
        default=30 * 86400.0,
        description="seconds between the automatic repair passes (resync-fast toward the "
        "peer, run by the master of the pair, or by its first node in name order when the "
        "pair has no roles); 0 = never",
    )
    mirror_followers: str = Field(
        default="",
        pattern=r"^([a-z0-9][a-z0-9_-]{0,30}(,[a-z0-9][a-z0-9_-]{0,30})*)?$",
        description="read-only followers this store's journal also feeds, comma separated: "
        "each its own reader mirror:<name>, queue MIRROR_TO_<NAME>, lag and status",
    )
    mirror_trash: bool = Field(
        default=False,
        description="SurgeMail's g_mirror_trash: a message the peer deletes (expunges) is "
        "moved to Trash here, and so on both stores, instead of being expunged (a delete in "
        "Trash stays final)",
    )
    mirror_follower: bool = Field(
        default=False,
        description="this store is a read-only follower of MIRROR_PEER: its mirror applies "
        "the peer's queue and ships nothing back",
    )


class ClusterSettings(CommonSettings):
    """``mailctl up``: the local cluster's own daemons (service ports come from the
    service settings above, so one environment variable moves a port everywhere)."""

    service_name: ClassVar[str] = "mailctl"

    nats_port: Port = 4222
    nats_monitor_port: Port = 8222
    local_spamd_port: Port = 10783
    local_clamd_port: Port = 13310
    scanners: bool = True
    demo_domain: str = "postern.test"
    demo_user: str = "demo"
    nats_auth: bool = Field(
        default=True,
        description="mailctl up: one NATS user per service with only the subjects it needs "
        "(passwords made once in <data>/nats/users, bcrypt hashes in the server's config)",
    )
    nats_tls: bool = Field(
        default=False,
        description="mailctl up: the local nats-server requires TLS (a CA and a server "
        "certificate are made in <data>/nats/tls) and every service talks TLS to it",
    )
    jetstream_max_bytes: Annotated[int, Field(ge=0)] = Field(
        default=0,
        description="disk the local nats-server's JetStream may use (max_file_store); 0 = "
        "half the free space of the data directory, at most what the stream budgets need "
        "(stream budgets not set explicitly are scaled down to fit, with a warning)",
    )

    probe_user: str | None = Field(
        default=None,
        description="account `mailctl probe` sends its test message to (default: the demo "
        "user of mailctl up)",
    )
    probe_password: str | None = Field(default=None, description="its password")
    probe_timeout: Annotated[float, Field(gt=0)] = Field(
        default=60.0, description="seconds `mailctl probe` waits for the whole round trip"
    )
    mirror_nats_port: Port = Field(
        default=4223, description="`mailctl up --mirror`: the second store's own nats-server"
    )
    mirror_imap_port: Port = Field(
        default=3143, description="`mailctl up --mirror`: the second store's IMAP port"
    )
    mirror_pop3_port: Port = Field(
        default=3110, description="`mailctl up --mirror`: the second store's POP3 port"
    )
    mirror_imaps_port: Port = Field(
        default=3993, description="`mailctl up --mirror`: the second store's IMAPS port"
    )
    mirror_pop3s_port: Port = Field(
        default=3995, description="`mailctl up --mirror`: the second store's POP3S port"
    )
    mirror_store_ops_port: Port = Field(
        default=9112, description="`mailctl up --mirror`: the second store's ops port"
    )

    @model_validator(mode="after")
    def _one_nats(self) -> ClusterSettings:
        """One resolution for ``mailctl up`` and every other ``mailctl`` command:
        POSTERN_NATS_URL when set (its port is then the local cluster's), else the local
        cluster on POSTERN_NATS_PORT. Both set and disagreeing is an error."""
        url_port = urlsplit(self.nats_url.split(",")[0]).port or 4222
        if "nats_url" not in self.model_fields_set:
            self.nats_url = f"nats://127.0.0.1:{self.nats_port}"
        elif "nats_port" not in self.model_fields_set:
            self.nats_port = url_port
        elif url_port != self.nats_port:
            raise ValueError(
                f"POSTERN_NATS_URL ({self.nats_url}) and POSTERN_NATS_PORT ({self.nats_port}) "
                "disagree: set one of them"
            )
        return self


SettingsT = TypeVar("SettingsT", bound=CommonSettings)


def env_name(settings_cls: type[CommonSettings], field: str) -> str:
    """The environment variable an operator sets for ``field``."""
    info = settings_cls.model_fields.get(field)
    alias = info.validation_alias if info else None
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    return ENV_PREFIX + field.upper()


def describe_error(settings_cls: type[CommonSettings], exc: ValidationError) -> str:
    """One line naming every bad setting, its value and what is wrong with it."""
    parts = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        value = err.get("input")
        shown = f"={value!r}" if isinstance(value, str | int | float | bool) else ""
        parts.append(f"{env_name(settings_cls, field)}{shown}: {err['msg']}")
    return "invalid setting " + "; ".join(parts)


def load_settings(settings_cls: type[SettingsT], **overrides: Any) -> SettingsT:
    """Build settings or stop the process with one clear line (exit status 2)."""
    try:
        return settings_cls(**overrides)
    except ValidationError as exc:
        print(
            f"postern-{settings_cls.service_name}: {describe_error(settings_cls, exc)}",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    except ConfigFileError as exc:
        print(f"postern-{settings_cls.service_name}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


ALL_SETTINGS: tuple[type[CommonSettings], ...] = (
    FilterSettings,
    StoreSettings,
    RelaySettings,
    WebmailSettings,
    MirrorSettings,
    ClusterSettings,
)


def _type_name(annotation: Any) -> str:
    args = get_args(annotation)
    if get_origin(annotation) is Literal:
        return " / ".join(str(a) for a in args)
    if args and type(None) in args:
        return " or ".join(_type_name(a) for a in args if a is not type(None)) + " (optional)"
    return str(getattr(annotation, "__name__", annotation))


def reference_markdown() -> str:
    """Every setting of every service as Markdown tables (docs/configuration.md)."""
    out: list[str] = []
    seen: set[str] = set()
    classes: tuple[type[CommonSettings], ...] = (CommonSettings, *ALL_SETTINGS)
    for cls in classes:
        rows = []
        for field, info in cls.model_fields.items():
            name = env_name(cls, field)
            inherited = cls is not CommonSettings and field in CommonSettings.model_fields
            if inherited and name in seen:
                continue
            seen.add(name)
            default = info.get_default(call_default_factory=False)
            if info.default_factory is not None:
                shown = "this host's name"
            elif default is None:
                shown = "unset"
            else:
                shown = f"`{default}`"
            note = info.description or ""
            rows.append(f"| `{name}` | {_type_name(info.annotation)} | {shown} | {note} |")
        if rows:
            label = "every service" if cls is CommonSettings else cls.service_name
            head = ["| setting | type | default | notes |", "|---|---|---|---|"]
            out += [f"### {label}", "", *head]
            out += [*rows, ""]
    return "\n".join(out)


def write_reference(doc: Path) -> None:
    """Replace the generated block of ``doc`` (between the settings markers)."""
    begin, end = "<!-- settings:begin -->", "<!-- settings:end -->"
    text = doc.read_text()
    head, tail = text[: text.index(begin) + len(begin)], text[text.index(end) :]
    doc.write_text(f"{head}\n{reference_markdown()}\n{tail}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--write"]:
        write_reference(Path(sys.argv[2]))
    else:
        print(reference_markdown())
