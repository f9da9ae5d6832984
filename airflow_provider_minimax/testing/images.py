"""Tiny valid images for tests of vision input, built in memory (no image library needed)."""

from __future__ import annotations

import struct
import zlib


def png(width: int = 4, height: int = 4, shade: int = 0) -> bytes:
    """A valid greyscale PNG; ``shade`` changes its bytes so two images can be told apart.

    :param width: pixels across.
    :param height: pixels down.
    :param shade: the grey level of every pixel, 0..255.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes([shade]) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


#: Byte strings that start like each other accepted type (enough for type sniffing, not decoding).
JPEG_HEAD = b"\xff\xd8\xff\xe0" + bytes(32)
GIF_HEAD = b"GIF89a" + bytes(32)
WEBP_HEAD = b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(32)
