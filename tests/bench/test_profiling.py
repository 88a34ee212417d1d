"""py-spy's folded stacks summarised for the report."""

from __future__ import annotations

from bench.profiling import summarize

MAIN = "run (services/store/__main__.py:5);serve (services/store/app.py:20)"
FETCH = "fetch (services/store/imap/handlers/fetch.py"
FOLDED = "\n".join(
    [
        f"{MAIN};{FETCH}:45);open (<built-in>) 30",
        f"{MAIN};{FETCH}:50) 10",
        "_worker (concurrent/futures/thread.py:83);search (mailcore/mailstore/account.py:225) 60",
        "garbage line",
    ]
)


def test_own_and_inclusive_time() -> None:
    lines = summarize(FOLDED)
    assert lines[0].startswith("100 samples at 200/s")
    own = lines[1 : lines.index("project functions, time including callees:")]
    assert own[0] == " 60.0%  search (mailcore/mailstore/account.py)"
    assert own[1] == " 30.0%  open (<built-in>)"
    assert own[2] == " 10.0%  fetch (services/store/imap/handlers/fetch.py)"
    inclusive = lines[lines.index("project functions, time including callees:") + 1 :]
    assert " 60.0%  search (mailcore/mailstore/account.py)" in inclusive
    assert " 40.0%  fetch (services/store/imap/handlers/fetch.py)" in inclusive  # both lines


def test_no_samples() -> None:
    assert summarize("") == ["no samples (the process was idle or py-spy could not attach)"]
