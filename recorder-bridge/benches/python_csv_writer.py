"""Python's csv.writer on the same rows as the `export` bench (200 000 rows to a file).

Run: python3 recorder-bridge/benches/python_csv_writer.py
"""
import csv, math, os, tempfile, time

ROWS = 200_000

def imu(i, rate=1000):
    t = i / rate
    s = lambda f, a, p: a * math.sin(2 * math.pi * f * t + p)
    return [i * 1000 // rate, s(.5, .2, 0), s(.7, .2, 1), 1 + s(.3, .05, 2), s(1.1, 30, 0),
            s(1.3, 30, .5), s(.9, 45, 1.5), 24 + s(.01, .5, 0), .01]

def efield(i, rate=128_000):
    us = i * 1_000_000 // rate
    t = us / 1e6
    ch = []
    for k in range(8):
        f = 7 + 3 * (k // 2)
        ph = math.pi / 2 if k % 2 else 0
        code = round(max(-1, min(1, .6 * math.sin(2 * math.pi * f * t + ph))) * 8388607)
        ch.append(code * 2.4 / 8388608)
    return [i, f"{us // 1_000_000}.{us % 1_000_000:06d}", 0, 0] + ch

for name, gen in (("imu_9col", imu), ("efield_12col", efield)):
    rows = [gen(i) for i in range(ROWS)]
    best = float("inf")
    for _ in range(3):
        with tempfile.NamedTemporaryFile("w", newline="", delete=False) as f:
            t0 = time.perf_counter()
            w = csv.writer(f)
            w.writerows(rows)
            f.flush()
            dt = time.perf_counter() - t0
        os.unlink(f.name)
        best = min(best, dt)
    print(f"{name}: {ROWS / best / 1e6:.3f} M rows/s ({best * 1000:.0f} ms for {ROWS} rows)")
