"""The freestanding firmware build (`firmware/device`, `#![no_std]` `#![no_main]`, built by
scripts/test.sh) answers frames on its "UART" (stdin/stdout here). Frames are built and checked
with an independent encoder: Python's zlib CRC-32 and a COBS implementation written here."""

import os
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEVICE = REPO / "firmware" / "device" / "target" / "release" / "keyward-fw-device"


def cobs_encode(data):
    out, block = bytearray(), bytearray()
    for b in data:
        if b == 0 or len(block) == 254:
            out.append(len(block) + 1)
            out += block
            block = bytearray()
            if b == 0:
                continue
        block.append(b)
    out.append(len(block) + 1)
    out += block
    return bytes(out)


def cobs_decode(data):
    out, i = bytearray(), 0
    while i < len(data):
        code = data[i]
        out += data[i + 1:i + code]
        i += code
        if code < 0xFF and i < len(data):
            out.append(0)
    return bytes(out)


def frame(payload):
    body = bytes(payload) + struct.pack("<I", zlib.crc32(bytes(payload)))
    return cobs_encode(body) + b"\x00"


def unframe(raw):
    frames = []
    for part in raw.split(b"\x00")[:-1]:
        body = cobs_decode(part)
        payload, crc = body[:-4], struct.unpack("<I", body[-4:])[0]
        assert zlib.crc32(payload) == crc, "bad CRC from the device"
        frames.append(payload)
    return frames


def test_freestanding_device_answers_frames():
    if not DEVICE.exists():
        pytest.fail(f"{DEVICE} is missing; scripts/test.sh builds it", pytrace=False)
    # seq 1 Hello{protocol 1}; garbage; seq 2 Random{len 16}, a key operation that an unpaired
    # device refuses (docs/security.md, "Serial pairing"); seq 3 an unknown variant (42).
    stream = frame([1, 0, 1]) + b"\x13\x37garbage\x00" + frame([2, 5, 16]) + frame([3, 42])
    out = subprocess.run([str(DEVICE)], input=stream, capture_output=True, timeout=30)
    assert out.returncode == 0
    frames = unframe(out.stdout)
    # Every non-empty frame gets one answer (docs/wire-protocol.md, "Link behaviour"): the
    # garbage an Error(BadFrame) under seq 0, the unknown variant Error(UnsupportedProtocol)
    # under its own seq.
    assert len(frames) == 4, frames
    hello, bad_frame, random, unknown = frames
    assert bad_frame == bytes([0, 5, 6]), "seq 0, Response::Error(BadFrame)"
    assert unknown == bytes([3, 5, 0]), "seq 3, Response::Error(UnsupportedProtocol)"
    assert hello[0] == 1 and hello[1] == 0, "seq 1, Response::Hello"
    assert b"keyward-fw" in hello
    assert random == bytes([2, 5, 7]), "seq 2, Response::Error(NotPaired)"
