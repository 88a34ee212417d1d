"""One module per workload; :data:`WORKLOADS` lists them in the order they run."""

from __future__ import annotations

from bench.workloads.base import Workload
from bench.workloads.w1_smtp import SmtpToImap
from bench.workloads.w2_scanned import SmtpScanned
from bench.workloads.w3_drain import DeliveryDrain
from bench.workloads.w4_imap import ImapWorkload
from bench.workloads.w5_pop3 import Pop3Workload
from bench.workloads.w6_w7_pending import MirrorWorkload, WebmailWorkload
from bench.workloads.w8_sessions import SessionsWorkload


def all_workloads() -> list[Workload]:
    return [
        SmtpToImap(),
        SmtpScanned(),
        DeliveryDrain(),
        ImapWorkload(),
        Pop3Workload(),
        MirrorWorkload(),
        WebmailWorkload(),
        SessionsWorkload(),
    ]


WORKLOAD_IDS = [w.id for w in all_workloads()]
