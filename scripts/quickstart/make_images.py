"""Writes the image quick start's folder, examples/quickstart/sks-ball/: five 64x64
pictures of one subject the bundled tiny image model has never drawn (a pink ball with
a white highlight on a dark teal floor), each with a caption file. The captions use
words the tiny model's T5 vocabulary has (it has 16 tokens for a prompt, the trigger
word included). Python's standard library only, so that it runs anywhere; the same
inputs give the same bytes.

    python3 scripts/quickstart/make_images.py
"""

import math
import struct
import zlib
from pathlib import Path

SIZE = 64
PINK = (236, 72, 153)
HIGHLIGHT = (255, 214, 236)
FLOOR = (13, 92, 99)
WALL = (20, 60, 70)

# (centre x, centre y, radius, caption)
BALLS = [
    (32, 34, 20, "a circle"),
    (22, 38, 16, "a circle"),
    (42, 36, 17, "a circle"),
    (32, 30, 24, "a circle"),
    (30, 42, 11, "a dot"),
]


def picture(cx, cy, radius):
    rows = []
    for y in range(SIZE):
        row = bytearray()
        for x in range(SIZE):
            colour = WALL if y < 24 else FLOOR
            d = math.hypot(x - cx, y - cy)
            if d <= radius:
                colour = PINK
                # A highlight up and to the left, as a lit ball has.
                if math.hypot(x - (cx - radius * 0.35), y - (cy - radius * 0.35)) < radius * 0.25:
                    colour = HIGHLIGHT
            row += bytes(colour)
        rows.append(bytes(row))
    return rows


def png(rows):
    raw = b"".join(b"\x00" + row for row in rows)

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def main():
    folder = Path(__file__).resolve().parents[2] / "examples" / "quickstart" / "sks-ball"
    folder.mkdir(parents=True, exist_ok=True)
    for index, (cx, cy, radius, caption) in enumerate(BALLS, start=1):
        (folder / f"ball-{index}.png").write_bytes(png(picture(cx, cy, radius)))
        (folder / f"ball-{index}.txt").write_text(caption + "\n")
    print(f"wrote {len(BALLS)} pictures and captions to {folder}")


if __name__ == "__main__":
    main()
