"""A third-party QUIC client (aioquic) that misbehaves towards a KWIK server in one way
per case, each from its own loopback source address (127.0.0.N), and reports how the
server ended the connection: one JSON object per case on stdout.

    kwik_rogue.py HOST PORT [CASE ...]

Cases (all run at once):
  alpn          offers ALPN "h3" instead of "kwik/1"
  version       OPEN with KWIK version 99
  forged-token  opens a real session, then JOINs it with a made-up token
  first-garbage a frame of an unknown type as the first frame
  garbage       a real session, then a frame of an unknown type on its control stream
  second-open   a real session, then a second OPEN (not allowed once a session runs)
  silent        completes the QUIC handshake and never sends OPEN or JOIN
  idle          a real session, then silence: the client vanishes without a close
  flood         twenty first-garbage connections in a row from one address
  streams       a real session, then 2000 logical streams of one byte each, never read

The KWIK frames are written from docs/PROTOCOL.md section 3:
type (varint) | length (varint) | payload.
"""

import asyncio
import json
import os
import socket
import ssl
import sys

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, StreamDataReceived

OPEN, JOIN, WELCOME, REFUSED = 0x01, 0x02, 0x03, 0x04
SOURCES = {
    "alpn": 11,
    "version": 12,
    "forged-token": 13,
    "first-garbage": 14,
    "garbage": 15,
    "second-open": 16,
    "silent": 17,
    "idle": 18,
    "flood": 19,
    "streams": 20,
}


def varint(v):
    if v < 1 << 6:
        return bytes([v])
    if v < 1 << 14:
        return (v | 0x4000).to_bytes(2, "big")
    if v < 1 << 30:
        return (v | 0x8000_0000).to_bytes(4, "big")
    return (v | 0xC000_0000_0000_0000).to_bytes(8, "big")


def read_varint(b, i):
    first = b[i]
    n = 1 << (first >> 6)
    v = first & 0x3F
    for k in range(1, n):
        v = (v << 8) | b[i + k]
    return v, i + n


def frame(ty, payload=b""):
    return varint(ty) + varint(len(payload)) + payload


def open_frame(version=1):
    return frame(OPEN, varint(version) + varint(1 << 20) + varint(1 << 16))


def frames(data):
    """(type, payload) of every complete frame in data."""
    out, i = [], 0
    while i < len(data):
        try:
            ty, j = read_varint(data, i)
            ln, j = read_varint(data, j)
        except IndexError:
            break
        if j + ln > len(data):
            break
        out.append((ty, data[j : j + ln]))
        i = j + ln
    return out


class Rogue(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.received = b""
        self.terminated = asyncio.get_running_loop().create_future()
        self.got_data = asyncio.Event()

    def quic_event_received(self, event):
        if isinstance(event, StreamDataReceived):
            # Kept here rather than handed to asyncio stream objects: those send a FIN
            # when they are garbage-collected, which would end the control channel.
            if event.stream_id == 0:
                self.received += event.data
                self.got_data.set()
            return
        if isinstance(event, ConnectionTerminated) and not self.terminated.done():
            self.terminated.set_result(event)
        super().quic_event_received(event)

    def send(self, data):
        self._quic.send_stream_data(0, data)
        self.transmit()

    async def answer(self):
        """The first frame the server sent on the control stream."""
        while not frames(self.received):
            self.got_data.clear()
            await self.got_data.wait()
        return frames(self.received)[0]

    def vanish(self):
        """Stops answering without a CONNECTION_CLOSE, like a host that lost power."""
        self.transmit = lambda: None
        if self._timer is not None:
            self._timer.cancel()
        self._transport.close()


async def connect(host, port, source, alpn="kwik/1"):
    config = QuicConfiguration(is_client=True, alpn_protocols=[alpn])
    config.verify_mode = ssl.CERT_NONE
    config.server_name = "localhost"
    config.idle_timeout = 60.0
    conn = QuicConnection(configuration=config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((f"127.0.0.{source}", 0))
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_datagram_endpoint(lambda: Rogue(conn), sock=sock)
    proto.connect((host, port))
    return proto


async def handshaken(host, port, source):
    proto = await connect(host, port, source)
    await proto.wait_connected()
    return proto


async def session(host, port, source):
    """A real KWIK session: OPEN answered by WELCOME. Returns the session id too."""
    proto = await handshaken(host, port, source)
    proto.send(open_frame())
    ty, payload = await proto.answer()
    assert ty == WELCOME, (ty, payload)
    return proto, payload[:16]


def ended(event, proto=None, **extra):
    out = {
        "error_code": event.error_code,
        "reason": event.reason_phrase,
        "frame_type": event.frame_type,
    }
    if proto is not None:
        out["answers"] = [
            {"type": ty, "payload": payload.hex()} for ty, payload in frames(proto.received)
        ]
    out.update(extra)
    return out


async def case_alpn(host, port, src):
    proto = await connect(host, port, src, alpn="h3")
    return ended(await proto.terminated)


async def case_version(host, port, src):
    proto = await handshaken(host, port, src)
    proto.send(open_frame(version=99))
    return ended(await proto.terminated, proto)


async def case_forged_token(host, port, src):
    first, session_id = await session(host, port, src)
    proto = await handshaken(host, port, src)
    token = bytes([1]) + os.urandom(80)
    proto.send(frame(JOIN, session_id + varint(1) + varint(len(token)) + token))
    event = await proto.terminated
    first.close()
    return ended(event, proto, session=session_id.hex())


async def case_first_garbage(host, port, src):
    proto = await handshaken(host, port, src)
    proto.send(frame(0x3F))
    return ended(await proto.terminated, proto)


async def case_garbage(host, port, src):
    proto, session_id = await session(host, port, src)
    proto.send(frame(0x3F))
    return ended(await proto.terminated, session=session_id.hex())


async def case_second_open(host, port, src):
    proto, session_id = await session(host, port, src)
    proto.send(open_frame())
    return ended(await proto.terminated, session=session_id.hex())


async def case_silent(host, port, src):
    proto = await handshaken(host, port, src)
    return ended(await proto.terminated)


async def case_idle(host, port, src):
    proto, session_id = await session(host, port, src)
    proto.vanish()
    return {"session": session_id.hex(), "vanished": True}


async def case_flood(host, port, src):
    codes = []
    for _ in range(20):
        proto = await handshaken(host, port, src)
        proto.send(frame(0x3F))
        codes.append((await proto.terminated).error_code)
        proto.close()
    return {"error_codes": codes}


async def case_streams(host, port, src):
    proto, session_id = await session(host, port, src)
    for i in range(2000):
        # A QUIC unidirectional stream per logical stream (client uni ids 2, 6, ...):
        # stream header (kind 0 = data, logical id), one segment of one byte.
        logical = 4 * i + 2
        data = varint(0) + varint(logical) + bytes([0]) + varint(0) + varint(1) + b"x"
        quic_id = proto._quic.get_next_available_stream_id(is_unidirectional=True)
        proto._quic.send_stream_data(quic_id, data)
    proto.transmit()
    return ended(await proto.terminated, session=session_id.hex())


CASES = {
    "alpn": case_alpn,
    "version": case_version,
    "forged-token": case_forged_token,
    "first-garbage": case_first_garbage,
    "garbage": case_garbage,
    "second-open": case_second_open,
    "silent": case_silent,
    "idle": case_idle,
    "flood": case_flood,
    "streams": case_streams,
}


async def run(host, port, name):
    src = SOURCES[name]
    try:
        result = await asyncio.wait_for(CASES[name](host, port, src), 60)
    except Exception as e:  # reported to the test, which fails on it
        result = {"exception": repr(e)}
    result.update({"case": name, "source": f"127.0.0.{src}"})
    print(json.dumps(result), flush=True)


async def main():
    host, port = sys.argv[1], int(sys.argv[2])
    names = sys.argv[3:] or list(CASES)
    await asyncio.gather(*(run(host, port, n) for n in names))


if __name__ == "__main__":
    asyncio.run(main())
