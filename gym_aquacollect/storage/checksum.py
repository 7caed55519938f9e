"""CRC32 of shard files, computed in parallel over file ranges.

Contents:
    * :func:`crc32_combine` - the CRC32 of ``A + B`` from ``crc32(A)``, ``crc32(B)`` and ``len(B)``.
    * :func:`file_crc32` - the CRC32 of a file (or of a byte range of it), read into one reused buffer.
    * :func:`parallel_file_crc32` - the same value, the ranges computed by several threads and combined.

Why: every committed shard's CRC32 goes into its manifest, and computing it means reading the whole
file back. For a shard of images that is the largest part of ``close()`` (a 400 MB shard: ~130 ms read +
CRC on one core). Both the read and ``zlib.crc32`` release the GIL, so on a machine with more than one core
the ranges are checksummed at the same time and joined with :func:`crc32_combine`; the result is the
plain CRC32 of the file (``zlib.crc32`` over its bytes), the value older datasets store.

Example:
    >>> import zlib
    >>> a, b = b"gym_", b"aquacollect"
    >>> crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)
    True
"""

from __future__ import annotations

import os
import threading
import zlib
from pathlib import Path

__all__ = ["crc32_combine", "file_crc32", "parallel_file_crc32"]

_POLY = 0xEDB88320  # CRC-32 (zlib), bit-reflected: bit 31 is the coefficient of x^0


def _mulmod(a: int, b: int) -> int:
    """``a(x) * b(x) mod P(x)`` for polynomials in the bit-reflected form of the CRC-32 register."""
    product = 0
    for bit in range(32):
        if a & (1 << (31 - bit)):
            product ^= b
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return product


def _x_pow_8n(n: int) -> int:
    """``x^(8 n) mod P`` (appending ``n`` zero bytes multiplies the register by it), by squaring."""
    result, power = 1 << 31, _mulmod(1 << 23, 1 << 31)  # x^0 and x^8 (bit 31 - 8 set)
    while n:
        if n & 1:
            result = _mulmod(result, power)
        power = _mulmod(power, power)
        n >>= 1
    return result


def crc32_combine(crc_a: int, crc_b: int, len_b: int) -> int:
    """``zlib.crc32(A + B)`` from ``crc_a = zlib.crc32(A)``, ``crc_b = zlib.crc32(B)`` and ``len_b = len(B)``.

    ``crc32(A + B)`` is ``crc32(A)`` carried through ``len_b`` more bytes of zeros, xor ``crc32(B)`` (the
    initial and final inversions cancel); carrying a register through ``n`` zero bytes is a multiplication
    by ``x^(8n)`` modulo the CRC polynomial, computed in O(log n) multiplications."""
    if len_b <= 0:
        return crc_a
    return _mulmod(crc_a, _x_pow_8n(len_b)) ^ crc_b


def file_crc32(path: Path | str, start: int = 0, stop: int | None = None, chunk: int = 256 << 10) -> int:
    """CRC32 of the bytes ``start:stop`` of a file (to the end when ``stop`` is None), read into one reused
    buffer (no allocation per read)."""
    crc = 0
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        f.seek(start)
        left = None if stop is None else max(0, stop - start)
        while left is None or left > 0:
            n = f.readinto(view if left is None or left >= chunk else view[:left])
            if not n:
                break
            crc = zlib.crc32(view[:n], crc)
            if left is not None:
                left -= n
    return crc


#: Files smaller than this are checksummed by one thread (starting threads would cost more).
PARALLEL_MIN_BYTES = 32 << 20


def parallel_file_crc32(path: Path | str, threads: int | None = None) -> int:
    """``zlib.crc32`` of a whole file, ``threads`` ranges at once (default: the CPUs this process may use,
    at most 4); one thread for files under :data:`PARALLEL_MIN_BYTES`."""
    size = os.stat(path).st_size
    if threads is None:
        try:
            threads = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            threads = os.cpu_count() or 1
    threads = max(1, min(int(threads), 4, size // max(1, PARALLEL_MIN_BYTES // 2) or 1))
    if threads == 1 or size < PARALLEL_MIN_BYTES:
        return file_crc32(path)
    bounds = [size * k // threads for k in range(threads + 1)]
    crcs: list[int | None] = [None] * threads
    errors: list[BaseException] = []

    def part(k: int) -> None:
        try:
            crcs[k] = file_crc32(path, bounds[k], bounds[k + 1])
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(e)

    workers = [threading.Thread(target=part, args=(k,), name=f"aquacollect-crc{k}", daemon=True)
               for k in range(1, threads)]
    for w in workers:
        w.start()
    part(0)
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    crc = crcs[0] or 0
    for k in range(1, threads):
        crc = crc32_combine(crc, crcs[k] or 0, bounds[k + 1] - bounds[k])
    return crc
