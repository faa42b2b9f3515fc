"""A caller that lives in a zone: run under `ip netns exec NS`, it forwards JSON-line calls
from stdin to the broker and prints each raw reply as one JSON line (or {"closed": true}).

Tests need a separate process because the broker identifies callers by the connecting
process's network namespace, not by the socket's.
"""

from __future__ import annotations

import json
import sys

from broker._wire import encode_call
from broker.client import Connection


def main() -> None:
    conn = Connection(sys.argv[1], timeout=30)
    for line in sys.stdin:
        req = json.loads(line)
        try:
            conn.send(encode_call(req["method"], req.get("parameters")))
            print(conn.receive().decode(), flush=True)
        except (ConnectionError, OSError):
            print(json.dumps({"closed": True}), flush=True)
            conn = Connection(sys.argv[1], timeout=30)


if __name__ == "__main__":
    main()
