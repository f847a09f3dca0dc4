"""A minimal SMTP sink for the daemon benchmark: accepts every message and throws it away.

    python3 bench/_smtp_sink.py PORT_FILE [--no-pipelining]

Listens on 127.0.0.1 (a free port, written to PORT_FILE once listening) and answers every
command with success; counts the messages and prints the count on SIGTERM. It stands in for a
mail server on another machine, so it is deliberately cheap (no parsing beyond line framing):
the CPU it still takes is measured by the benchmark and reported on its own line. It offers
PIPELINING (RFC 2920), as common mail servers do: commands that arrive together are answered in
order, together; ``--no-pipelining`` leaves it out of the EHLO answer.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

received = 0
EHLO = b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n"


class _Session(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = b""
        self.in_data = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"220 sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        global received
        assert self.transport is not None
        self.buf += data
        out: list[bytes] = []
        while True:
            if self.in_data:
                end = self.buf.find(b"\r\n.\r\n")
                if end < 0:
                    break
                self.buf = self.buf[end + 5 :]
                self.in_data = False
                received += 1
                out.append(b"250 OK queued\r\n")
                continue
            nl = self.buf.find(b"\r\n")
            if nl < 0:
                break
            line, self.buf = self.buf[:nl], self.buf[nl + 2 :]
            verb = line[:4].upper()
            if verb == b"EHLO":
                out.append(EHLO)
            elif verb == b"DATA":
                self.in_data = True
                self.buf = b"\r\n" + self.buf  # so a message with no body still ends at \r\n.\r\n
                out.append(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                out.append(b"221 bye\r\n")
                self.transport.write(b"".join(out))
                self.transport.close()
                return
            else:
                out.append(b"250 OK\r\n")
        if out:
            self.transport.write(b"".join(out))


async def _main(port_file: Path) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Session, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(port))
    tmp.replace(port_file)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    server.close()
    print(received, flush=True)


if __name__ == "__main__":
    if "--no-pipelining" in sys.argv[2:]:
        EHLO = b"250-sink\r\n250 8BITMIME\r\n"
    asyncio.run(_main(Path(sys.argv[1])))
