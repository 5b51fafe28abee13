"""Tests of uf2.py: run with `python3 -m unittest discover -s firmware/xiao/tools`."""

import os
import random
import struct
import unittest

import uf2


class Uf2Tests(unittest.TestCase):
    def test_round_trip_of_odd_sized_images(self):
        rng = random.Random(7)
        for size in (1, 255, 256, 257, 476, 4096, 10_001):
            image = bytes(rng.getrandbits(8) for _ in range(size))
            blocks = uf2.convert(image, 0x27000)
            self.assertEqual(len(blocks) % 512, 0)
            self.assertEqual(len(blocks) // 512, (size + 255) // 256)
            base, back, family = uf2.parse(blocks)
            self.assertEqual(base, 0x27000)
            self.assertEqual(family, 0xADA52840)
            self.assertEqual(back[:size], image)
            self.assertTrue(all(b == 0xFF for b in back[size:]))

    def test_block_fields_follow_the_spec(self):
        blocks = uf2.convert(b"\x01" * 600, 0x27000)
        second = blocks[512:1024]
        fields = struct.unpack_from("<IIIIIIII", second)
        self.assertEqual(fields, (0x0A324655, 0x9E5D5157, 0x2000, 0x27100, 256, 1, 3, 0xADA52840))
        self.assertEqual(struct.unpack_from("<I", second, 508)[0], 0x0AB16F30)
        # Unused payload area is zero.
        self.assertEqual(second[32 + 256:508], bytes(476 - 256))

    def test_corruption_and_bad_arguments_are_rejected(self):
        blocks = bytearray(uf2.convert(b"\x00" * 1000, 0x27000))
        with self.assertRaises(uf2.Uf2Error):
            uf2.parse(bytes(blocks[:-1]))
        blocks[512] ^= 0xFF
        with self.assertRaises(uf2.Uf2Error):
            uf2.parse(bytes(blocks))
        with self.assertRaises(uf2.Uf2Error):
            uf2.convert(b"\x00", 0x27001)
        with self.assertRaises(uf2.Uf2Error):
            uf2.convert(b"", 0x27000)

    def test_missing_block_is_detected(self):
        blocks = uf2.convert(b"\x00" * 1000, 0x27000)
        with self.assertRaises(uf2.Uf2Error):
            uf2.parse(blocks[:512] + blocks[1024:])

    def test_cli_convert_and_info(self):
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "fw.bin")
            dst = os.path.join(d, "fw.uf2")
            with open(src, "wb") as f:
                f.write(bytes(range(256)) * 3)
            self.assertEqual(uf2.main(["convert", src, dst]), 0)
            self.assertEqual(uf2.main(["info", dst]), 0)
            self.assertEqual(uf2.main(["info", src]), 1)


if __name__ == "__main__":
    unittest.main()
