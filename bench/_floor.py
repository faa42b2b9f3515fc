"""The Python floor: a minimal asyncio + msgspec server of NUL-framed JSON.

`python3 -m bench._floor --socket PATH --replies FILE`: FILE maps a method name to the reply
frame the broker sent for it (captured in the same run). Each call is decoded with msgspec
(method and raw parameters, as the broker does), its canned reply *object* is encoded again
with msgspec and sent with its NUL: the same bytes the broker sends, with the least a Python
asyncio server can do to answer them. No identification, no dispatch table, no table lookup.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from typing import Any

import msgspec


class _Call(msgspec.Struct):
    method: str
    parameters: msgspec.Raw = msgspec.Raw(b"null")


async def serve(path: str, replies: dict[str, Any]) -> None:
    decoder = msgspec.json.Decoder(_Call)
    encoder = msgspec.json.Encoder()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = bytearray()
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                buf += data
                while (end := buf.find(b"\0")) >= 0:
                    call = decoder.decode(bytes(buf[:end]))
                    del buf[: end + 1]
                    writer.write(encoder.encode(replies[call.method]) + b"\0")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_unix_server(handle, path=path, limit=1 << 21)
    os.chmod(path, 0o666)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--replies", required=True)
    args = parser.parse_args()
    with open(args.replies, "rb") as f:
        frames: dict[str, str] = msgspec.json.decode(f.read())
    replies = {method: msgspec.json.decode(frame.encode()) for method, frame in frames.items()}
    asyncio.run(serve(args.socket, replies))


if __name__ == "__main__":
    main()
