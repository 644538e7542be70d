#!/usr/bin/python3
"""Writes go_float.txt: doubles (as C99 hex) and what prometheus_client's
floatToGoString makes of them, for the unit test of FloatToGoString.

    /usr/bin/python3 tests/unit/golden/make_go_float.py > tests/unit/golden/go_float.txt
"""
import random
import struct

from prometheus_client.utils import floatToGoString

values = [0.0, -0.0, 1.0, 10.0, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 2.5, 5.0,
          7.5, 1e-4, 1e-5, 123456.0, 999999.0, 1e6, 1234567.0, 12345678.9, 1e15, 1e16, 1.5e16,
          1e22, 1e300, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -1.5, -1e6,
          -2.5e-7, 0.1 + 0.2, 1 / 3, 2 ** 53, 2 ** 53 + 2, float('inf'), float('-inf')]
rng = random.Random(20261202)
for _ in range(1500):
    values.append(struct.unpack('<d', struct.pack('<Q', rng.getrandbits(64)))[0])
for _ in range(1500):
    values.append(rng.uniform(-1, 1) * 10 ** rng.randint(-12, 20))
for v in map(float, values):
    if v != v:
        continue
    print(v.hex(), floatToGoString(v))
