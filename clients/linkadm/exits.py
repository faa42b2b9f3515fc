"""linkadm's exit codes and one-line explanations for failures that are not the broker's answer.

A script driving linkadm must tell "the broker said no" from "there was no broker to ask", and
"the broker went away in the middle" from both: the first is final, the second wants a started
broker, the third wants the state read again before a write is repeated. So every way of
failing has its own exit code, and the message says what happened and what to do, in one line
(a user never sees a traceback). The table is printed in `linkadm --help` and the man page, so
the two never disagree.

linkadm's own (the daemon has no exit codes to give a client): it moved here from
broker/_exits.py with linkadm (issue 16), and tests import it from here.
"""

from __future__ import annotations

from broker.client import (
    BrokerGone,
    BrokerNotRunning,
    BrokerTimeout,
    BrokerUnreachable,
    ProtocolMismatch,
    SocketMissing,
    SocketNotPermitted,
)

__all__ = ["EXIT_CODES", "OK", "REFUSED", "USAGE", "epilog", "explain"]

OK = 0
REFUSED = 1  # the broker answered with an error (link not found, permission denied, ...)
USAGE = 2  # bad command line (argparse's own code too)
SOCKET_MISSING = 3
NOT_RUNNING = 4
NOT_PERMITTED = 5
GONE = 6
TIMEOUT = 7
NOT_A_BROKER = 8
UNREACHABLE = 9
INTERRUPTED = 130

EXIT_CODES: tuple[tuple[int, str], ...] = (
    (OK, "success"),
    (REFUSED, "the broker refused the call (the message names its error)"),
    (USAGE, "bad command line"),
    (SOCKET_MISSING, "no broker socket at the path (broker not running, or not attached in "
     "this zone)"),
    (NOT_RUNNING, "the socket exists but no broker listens on it"),
    (NOT_PERMITTED, "not allowed to open the socket"),
    (GONE, "the broker closed the connection before replying (it stopped or restarted)"),
    (TIMEOUT, "no reply in time"),
    (NOT_A_BROKER, "something other than linkbrokerd answered on the socket"),
    (UNREACHABLE, "any other failure to reach the broker"),
    (INTERRUPTED, "interrupted (Ctrl-C)"),
)

_BY_CLASS: tuple[tuple[type[BrokerUnreachable], int, str], ...] = (
    (SocketMissing, SOCKET_MISSING,
     "no broker socket at {path}: start linkbrokerd (systemctl start linkbroker.socket), or "
     "point --socket or $LINKBROKER_SOCKET at its socket"),
    (BrokerNotRunning, NOT_RUNNING,
     "no broker is listening on {path} ({why}): start linkbrokerd (systemctl start "
     "linkbroker), or point --socket at a running one"),
    (SocketNotPermitted, NOT_PERMITTED,
     "not allowed to open {path} ({why}): check the socket's and its directories' modes, "
     "or run as a user who may"),
    (BrokerGone, GONE,
     "the broker closed the connection before replying (it stopped or restarted): run "
     "the command again (after a change, first check with show-link whether it happened)"),
    (BrokerTimeout, TIMEOUT,
     "the broker at {path} did not reply in time ({why}): it may be overloaded or stuck; "
     "see its log (journalctl -u linkbroker)"),
    (ProtocolMismatch, NOT_A_BROKER,
     "what answered on {path} is not linkbrokerd ({why}): check --socket"),
)


def explain(exc: BrokerUnreachable) -> tuple[int, str]:
    """The exit code and one line for a failure to reach the broker."""
    for cls, code, text in _BY_CLASS:
        if isinstance(exc, cls):
            return code, text.format(path=exc.path, why=exc.strerror)
    return UNREACHABLE, (f"cannot reach the broker at {exc.path} ({exc.strerror}): is "
                         "linkbrokerd running? set --socket or $LINKBROKER_SOCKET")


def epilog() -> str:
    """The exit-status table for --help and the man page."""
    lines = ["exit status:"]
    lines += [f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES]
    return "\n".join(lines) + "\n"
