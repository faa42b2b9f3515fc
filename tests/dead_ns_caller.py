"""A caller whose connection outlives the namespace it was made from (finding 1 of the
hostile-zone review): the parent makes a Unix socket, a child unshares a new network
namespace, connects the socket to the broker from there, optionally makes one call, reports
its namespace inode and exits; its namespace then dies (nothing else holds it) while the
parent keeps the connection. The parent then forwards JSON-line calls from stdin over that
same connection, printing each raw reply (or {"closed": true}).

Run: python3 tests/dead_ns_caller.py SOCKET [--call METHOD]
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import sys

from broker._wire import FrameBuffer, encode_call

CLONE_NEWNET = 0x40000000


def _receive(sock: socket.socket, frames: FrameBuffer) -> str | None:
    while True:
        data = sock.recv(65536)
        if not data:
            return None
        batch = frames.feed(data)
        if batch:
            return batch[0].decode()


def main() -> None:
    path = sys.argv[1]
    call = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--call" else None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    frames = FrameBuffer(1 << 24)
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a namespace of its own, the connection, then gone
        os.close(rd)
        if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNET) != 0:
            os._exit(3)
        sock.connect(path)
        # GetInfo is answered only once the broker has identified the connection.
        sock.sendall(encode_call(call or "org.varlink.service.GetInfo"))
        first = _receive(sock, frames) or '{"closed": true}'
        inode = os.stat("/proc/self/ns/net").st_ino
        os.write(wr, json.dumps({"inode": inode, "reply": json.loads(first)}).encode())
        os._exit(0)
    os.close(wr)
    report = b""
    while chunk := os.read(rd, 65536):
        report += chunk
    os.waitpid(pid, 0)
    print(report.decode(), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        try:
            sock.sendall(encode_call(req["method"], req.get("parameters")))
            reply: str | None = _receive(sock, frames)
        except OSError:
            reply = None
        print(reply if reply is not None else json.dumps({"closed": True}), flush=True)


if __name__ == "__main__":
    main()
