"""One module per workload; :data:`WORKLOADS` lists them in the order they run."""

from __future__ import annotations

from bench.workloads.base import Workload
from bench.workloads.w1_smtp import SmtpToImap
from bench.workloads.w2_scanned import SmtpScanned
from bench.workloads.w3_drain import DeliveryDrain
from bench.workloads.w4_imap import ImapWorkload
from bench.workloads.w4b_sessions import SessionsWorkload
from bench.workloads.w4c_shared import SharedMailboxWorkload
from bench.workloads.w5_pop3 import Pop3Workload
from bench.workloads.w6_mirror import MirrorWorkload
from bench.workloads.w6_modes import FollowerWorkload, SyncModeWorkload
from bench.workloads.w7_webmail import WebmailWorkload
from bench.workloads.w8_relay import OutboundRelay
from bench.workloads.w9_sort import SortThreadWorkload


def all_workloads() -> list[Workload]:
    return [
        SmtpToImap(),
        SmtpScanned(),
        DeliveryDrain(),
        ImapWorkload(),
        SessionsWorkload(),
        SharedMailboxWorkload(),
        Pop3Workload(),
        MirrorWorkload(),
        SyncModeWorkload(),
        FollowerWorkload(),
        WebmailWorkload(),
        OutboundRelay(),
        SortThreadWorkload(),
    ]


WORKLOAD_IDS = [w.id for w in all_workloads()]
