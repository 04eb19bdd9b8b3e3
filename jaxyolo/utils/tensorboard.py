"""TensorBoard scalars without TensorFlow: ``ScalarWriter(logdir).write(scalars, step)``.

An event file is a TFRecord file of ``Event`` protocol buffers: each record is its length (uint64), the length's
masked CRC-32C, the bytes and their masked CRC-32C, all little-endian. The first event names the file version;
each ``write`` adds one event with a ``simple_value`` per scalar (what TensorBoard's scalar dashboard reads, as
PyTorch's SummaryWriter writes it). The protos come from the ``tensorboard`` package (protobuf only); TensorFlow's
``tf.summary`` would cost the trainer a TensorFlow import (~2.5 s of start-up CPU) for a few numbers per epoch.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # Castagnoli, reflected
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def record(data: bytes) -> bytes:
    """One TFRecord: length, its masked CRC, the data, its masked CRC."""
    n = struct.pack("<Q", len(data))
    return n + struct.pack("<I", masked_crc32c(n)) + data + struct.pack("<I", masked_crc32c(data))


class ScalarWriter:
    """Appends scalar events to ``<logdir>/events.out.tfevents.<time>.<host>.<pid>.0.v2`` (TensorFlow 2's name)."""

    def __init__(self, logdir: str | Path):
        from tensorboard.compat.proto import event_pb2, summary_pb2

        self._event, self._summary = event_pb2.Event, summary_pb2.Summary
        now = time.time()
        self.path = Path(logdir) / f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}.0.v2"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._append(self._event(wall_time=now, file_version="brain.Event:2"))

    def _append(self, event) -> None:
        with open(self.path, "ab") as f:
            f.write(record(event.SerializeToString()))

    def write(self, scalars: dict, step: int) -> None:
        values = [self._summary.Value(tag=str(k), simple_value=float(v)) for k, v in scalars.items()]
        self._append(self._event(wall_time=time.time(), step=int(step), summary=self._summary(value=values)))
