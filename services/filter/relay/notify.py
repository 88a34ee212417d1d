"""Sending DSNs (:mod:`services.filter.relay.dsn`) back to the sender: a local sender's
DSN goes to ``MAIL_INBOUND`` like any mail (the store files it in the INBOX), a remote
sender's (a forwarded message) to ``MAIL_OUTBOUND``; both with a null reverse-path, so a
DSN never causes another (RFC 5321 §4.5.5). The id derives from the original, so a retry
of the same notice within the duplicate window is stored once.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.object_store import ObjectStore

from mailcore import address as addr
from mailcore import metrics
from mailcore.bus import names
from mailcore.bus.claimcheck import publish_mail
from mailcore.bus.schemas import ClientInfo, MailMessage
from mailcore.directory import DirectoryView
from mailcore.logging import get_logger
from services.filter.relay.dsn import RecipientStatus, build_dsn

log = get_logger("relay")


class Notifier:
    def __init__(
        self, js: JetStreamContext, bodies: ObjectStore, directory: DirectoryView, hostname: str
    ) -> None:
        self.js = js
        self.bodies = bodies
        self.directory = directory
        self.hostname = hostname

    async def notify(
        self,
        mail: MailMessage,
        body: bytes,
        statuses: list[RecipientStatus],
        *,
        action: str,
        tag: str,
        expires_at: float | None = None,
    ) -> bool:
        """Send a DSN for ``statuses``; False when none is due (null sender). Raises when
        the bus refuses it (the caller retries the message rather than lose the notice)."""
        if not mail.mail_from or not statuses:
            return False
        report = build_dsn(
            reporting_mta=self.hostname,
            sender=mail.mail_from,
            original_id=mail.id,
            received_at=mail.received_at,
            body=body,
            statuses=statuses,
            action=action,
            expires_at=expires_at,
        )
        try:
            local = self.directory.is_local_domain(addr.split(addr.normalize(mail.mail_from))[1])
        except addr.InvalidAddress:
            log.warning("DSN not sent: unusable sender", id=mail.id, sender=mail.mail_from)
            return False
        notice = MailMessage(
            id=f"{mail.id}.dsn.{tag}",
            mail_from="",
            recipients=[mail.mail_from],
            size=len(report),
            client=ClientInfo(ip="127.0.0.1", helo=self.hostname, listener="relay"),
        )
        subject = names.SUBJECT_INBOUND if local else names.SUBJECT_OUTBOUND
        await publish_mail(self.js, self.bodies, subject, notice, report)
        metrics.RELAY_DSN.labels(action).inc()
        log.info(
            "DSN sent",
            id=mail.id,
            action=action,
            to=mail.mail_from,
            recipients=[s.recipient for s in statuses],
        )
        return True
