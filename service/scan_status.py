"""The exit statuses of `span scan`: one table that the command's --help, its code and the README
(checked by tests/unit/service/test_scan.py) all take their wording from."""
from __future__ import annotations

from enum import IntEnum


class ScanExit(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    INTERRUPTED = 130   # 128 + SIGINT, as shells report Ctrl-C


MEANINGS = {
    ScanExit.OK: "every image was analysed, or done by an earlier run",
    ScanExit.FAILED: "any image failed, or the server or Ray cluster was lost",
    ScanExit.USAGE: "nothing to scan, or a bad argument",
    ScanExit.INTERRUPTED: "interrupted by Ctrl-C or SIGTERM; the summary holds what is done",
}


def exit_status_help() -> str:
    """For `span scan --help` (one paragraph)."""
    return "Exit status: " + "; ".join(f"{int(code)} {MEANINGS[code]}" for code in ScanExit) + "."


def exit_status_markdown() -> str:
    """For README.md, "Scanning folders"."""
    return "\n".join(f"  - `{int(code)}`: {MEANINGS[code]}" for code in ScanExit)
