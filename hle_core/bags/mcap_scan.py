"""Recover the complete messages of a damaged MCAP file (truncated recording, lost footer / summary).

rosbags refuses an MCAP file whose footer is missing ("File end magic is invalid."), which is exactly what a
recorder killed mid-write leaves behind. :class:`McapScan` reads the file front to back instead (MCAP
specification, https://mcap.dev/spec: magic, then ``opcode u8 | length u64 | body`` records) and yields every
message whose record is complete, including those of a cut-off uncompressed chunk, then stops at the first
incomplete or malformed record and says where (``error``). Indexes and the summary section are not needed.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

__all__ = ["McapScan", "McapSchema", "McapChannel", "MCAP_MAGIC"]

MCAP_MAGIC = b"\x89MCAP0\r\n"
_SCHEMA, _CHANNEL, _MESSAGE, _CHUNK, _FOOTER, _DATA_END = 0x03, 0x04, 0x05, 0x06, 0x02, 0x0F


@dataclass(frozen=True)
class McapSchema:
    id: int
    name: str                  # e.g. sensor_msgs/msg/Image
    encoding: str              # ros2msg | ros2idl
    data: str                  # the message definition text


@dataclass(frozen=True)
class McapChannel:
    id: int
    schema_id: int
    topic: str
    message_encoding: str      # cdr


class _Truncated(Exception):
    pass


class _Body:
    """Cursor over one record body."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise _Truncated(f"record field needs {n} bytes, {len(self.data) - self.pos} left")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]

    def string(self) -> str:
        return self.take(self.u32()).decode("utf-8", errors="replace")

    def rest(self) -> bytes:
        out = self.data[self.pos:]
        self.pos = len(self.data)
        return out


class McapScan:
    """Linear, error-tolerant pass over an MCAP file.

    After (or during) :meth:`messages`: ``schemas`` and ``channels`` by id, ``error`` (None when the file ended
    cleanly, else what stopped the scan and at which byte offset), ``complete`` (the footer was reached).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.schemas: dict[int, McapSchema] = {}
        self.channels: dict[int, McapChannel] = {}
        self.error: str | None = None
        self.complete = False

    def messages(self) -> Iterator[tuple[McapChannel, int, bytes]]:
        """``(channel, log_time_ns, cdr_bytes)`` of every complete message record, in file order."""
        with self.path.open("rb") as fh:
            if fh.read(len(MCAP_MAGIC)) != MCAP_MAGIC:
                self.error = f"{self.path} does not start with the MCAP magic bytes"
                return
            yield from self._records(fh)

    def _records(self, fh: BinaryIO) -> Iterator[tuple[McapChannel, int, bytes]]:
        size = os.fstat(fh.fileno()).st_size
        while True:
            offset = fh.tell()
            head = fh.read(9)
            if not head:
                self.error = f"file ends at byte {offset} without an MCAP footer (truncated)"
                return
            if len(head) < 9:
                self.error = f"truncated record header at byte {offset}"
                return
            op, length = head[0], struct.unpack("<Q", head[1:])[0]
            body = fh.read(min(length, max(size - fh.tell(), 0)))      # a garbage length must not allocate it
            if op == _FOOTER or op == _DATA_END:
                self.complete = op == _FOOTER
                if op == _FOOTER:
                    return
                continue
            try:
                if len(body) < length and op != _CHUNK:
                    raise _Truncated(f"record needs {length} bytes, {len(body)} present")
                yield from self._record(op, body, partial=len(body) < length)
            except _Truncated as exc:
                self.error = f"truncated or malformed record (opcode 0x{op:02x}) at byte {offset}: {exc}"
                return
            if len(body) < length:
                self.error = f"truncated chunk at byte {offset}: {len(body)} of {length} bytes present"
                return

    def _record(self, op: int, data: bytes, partial: bool) -> Iterator[tuple[McapChannel, int, bytes]]:
        body = _Body(data)
        if op == _SCHEMA:
            sid = body.u16()
            self.schemas[sid] = McapSchema(sid, body.string(), body.string(),
                                           body.take(body.u32()).decode("utf-8", errors="replace"))
        elif op == _CHANNEL:
            cid, sid = body.u16(), body.u16()
            self.channels[cid] = McapChannel(cid, sid, body.string(), body.string())
        elif op == _MESSAGE:
            cid = body.u16()
            body.take(4)                                                  # sequence
            log_time = body.u64()
            body.take(8)                                                  # publish time
            if cid not in self.channels:
                raise _Truncated(f"message on unknown channel {cid}")
            yield self.channels[cid], log_time, body.rest()
        elif op == _CHUNK:
            body.take(16)                                                 # message start / end time
            size, crc = body.u64(), body.u32()
            compression = body.string()
            records_len = body.u64()
            records = body.rest()
            if compression:
                if partial or len(records) < records_len:
                    raise _Truncated(f"{compression}-compressed chunk cut off")
                records = _decompress(records, compression, size, crc)
            yield from self._inner(records)

    def _inner(self, records: bytes) -> Iterator[tuple[McapChannel, int, bytes]]:
        """Records inside a chunk body; a cut-off last record ends the chunk (the caller reports it)."""
        pos = 0
        while pos + 9 <= len(records):
            op, length = records[pos], struct.unpack_from("<Q", records, pos + 1)[0]
            if pos + 9 + length > len(records):
                return
            yield from self._record(op, records[pos + 9:pos + 9 + length], partial=False)
            pos += 9 + length


def _decompress(data: bytes, compression: str, size: int, crc: int) -> bytes:
    try:
        from rosbags.rosbag2.storage_mcap import decompress   # zstd / lz4 with size and CRC checks
    except ImportError as exc:                                   # pragma: no cover - rosbags layout changed
        raise _Truncated(f"cannot decompress {compression} chunks: {exc}") from exc
    try:
        return decompress(data, compression, size, crc)
    except Exception as exc:
        raise _Truncated(f"{compression} chunk does not decompress: {exc}") from exc
