#!/usr/bin/env python3
"""Convert a flat binary image to UF2 for drag-and-drop flashing, and back.

UF2 (Microsoft's USB Flashing Format) is a sequence of independent 512-byte
blocks, each carrying up to 476 bytes of payload and the flash address it
belongs at. The XIAO nRF52840's bootloader accepts blocks whose family id is
0xADA52840 (nRF52840) and writes them at their addresses, so the image must
start at the application base, 0x27000 on this board.

Block layout (all little-endian u32):
  0  magic 0x0A324655      4  magic 0x9E5D5157     8  flags
  12 target address        16 payload size         20 block number
  24 total blocks          28 family id (flag 0x2000 set)
  32 payload (476 bytes, of which `payload size` are used)
  508 magic 0x0AB16F30

Standard library only. Usage:
  uf2.py convert firmware.bin firmware.uf2 [--base 0x27000] [--family 0xADA52840]
  uf2.py info firmware.uf2
"""

import argparse
import struct
import sys

MAGIC_START0 = 0x0A324655
MAGIC_START1 = 0x9E5D5157
MAGIC_END = 0x0AB16F30
FLAG_FAMILY_ID_PRESENT = 0x00002000
FLAG_NOT_MAIN_FLASH = 0x00000001
BLOCK_SIZE = 512
PAYLOAD_AREA = 476
# Bootloaders expect 256-byte payloads (one flash write unit) per block.
PAYLOAD_SIZE = 256
NRF52840_FAMILY = 0xADA52840
XIAO_APP_BASE = 0x27000


class Uf2Error(ValueError):
    """A UF2 file that cannot be parsed, or arguments that cannot be encoded."""


def convert(image: bytes, base: int, family: int = NRF52840_FAMILY) -> bytes:
    """Encode `image`, to be placed at flash address `base`, as UF2 blocks."""
    if base % PAYLOAD_SIZE != 0:
        raise Uf2Error(f"base address {base:#x} is not {PAYLOAD_SIZE}-byte aligned")
    if not image:
        raise Uf2Error("empty image")
    chunks = [image[i:i + PAYLOAD_SIZE] for i in range(0, len(image), PAYLOAD_SIZE)]
    out = bytearray()
    for number, chunk in enumerate(chunks):
        # Pad the last chunk to a whole write unit with erased-flash bytes.
        payload = chunk.ljust(PAYLOAD_SIZE, b"\xff")
        header = struct.pack(
            "<IIIIIIII",
            MAGIC_START0,
            MAGIC_START1,
            FLAG_FAMILY_ID_PRESENT,
            base + number * PAYLOAD_SIZE,
            PAYLOAD_SIZE,
            number,
            len(chunks),
            family,
        )
        block = header + payload.ljust(PAYLOAD_AREA, b"\x00") + struct.pack("<I", MAGIC_END)
        assert len(block) == BLOCK_SIZE
        out += block
    return bytes(out)


def parse(uf2: bytes):
    """Decode UF2 blocks into (base, image, family). Gaps are filled with 0xFF."""
    if len(uf2) == 0 or len(uf2) % BLOCK_SIZE != 0:
        raise Uf2Error(f"length {len(uf2)} is not a positive multiple of {BLOCK_SIZE}")
    pieces = {}
    families = set()
    total = None
    for offset in range(0, len(uf2), BLOCK_SIZE):
        block = uf2[offset:offset + BLOCK_SIZE]
        m0, m1, flags, addr, size, number, count, family = struct.unpack_from("<IIIIIIII", block)
        (m_end,) = struct.unpack_from("<I", block, BLOCK_SIZE - 4)
        if (m0, m1, m_end) != (MAGIC_START0, MAGIC_START1, MAGIC_END):
            raise Uf2Error(f"block at byte {offset}: bad magic")
        if flags & FLAG_NOT_MAIN_FLASH:
            continue
        if size > PAYLOAD_AREA:
            raise Uf2Error(f"block {number}: payload size {size} > {PAYLOAD_AREA}")
        if total is None:
            total = count
        elif count != total:
            raise Uf2Error(f"block {number}: total {count} differs from {total}")
        if number >= count:
            raise Uf2Error(f"block number {number} >= total {count}")
        if flags & FLAG_FAMILY_ID_PRESENT:
            families.add(family)
        pieces[addr] = block[32:32 + size]
    if not pieces:
        raise Uf2Error("no main-flash blocks")
    if len(pieces) != total:
        raise Uf2Error(f"{len(pieces)} distinct blocks, header says {total}")
    if len(families) > 1:
        raise Uf2Error(f"mixed family ids {sorted(families)}")
    base = min(pieces)
    end = max(a + len(p) for a, p in pieces.items())
    image = bytearray(b"\xff" * (end - base))
    for addr, payload in pieces.items():
        image[addr - base:addr - base + len(payload)] = payload
    return base, bytes(image), families.pop() if families else None


def _int(text: str) -> int:
    return int(text, 0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert", help="binary image -> UF2")
    c.add_argument("input")
    c.add_argument("output")
    c.add_argument("--base", type=_int, default=XIAO_APP_BASE, help="flash address of the image (default 0x27000)")
    c.add_argument("--family", type=_int, default=NRF52840_FAMILY, help="UF2 family id (default 0xADA52840)")
    i = sub.add_parser("info", help="describe a UF2 file")
    i.add_argument("input")
    args = parser.parse_args(argv)
    try:
        if args.command == "convert":
            with open(args.input, "rb") as f:
                image = f.read()
            uf2 = convert(image, args.base, args.family)
            # Read back what was written: a converter bug must not reach a board.
            base, back, family = parse(uf2)
            if base != args.base or back[:len(image)] != image or family != args.family:
                raise Uf2Error("round-trip check failed")
            with open(args.output, "wb") as f:
                f.write(uf2)
            print(f"{args.output}: {len(uf2) // BLOCK_SIZE} blocks, {len(image)} bytes at {args.base:#x}, family {args.family:#x}")
        else:
            with open(args.input, "rb") as f:
                base, image, family = parse(f.read())
            fam = "none" if family is None else f"{family:#x}"
            print(f"{args.input}: {len(image)} bytes at {base:#x}..{base + len(image):#x}, family {fam}")
    except (OSError, Uf2Error) as e:
        print(f"uf2.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
