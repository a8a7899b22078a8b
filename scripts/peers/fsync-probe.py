"""The disk's own floor for a durable write: appends 4 KiB and fsyncs, N times, in DIR.

Prints `fsync p50_ms p99_ms max_ms` for scripts/bench, which reports Handoff's latency beside it.
"""
import os
import sys
import time

directory, count = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2000
path = os.path.join(directory, "fsync-probe")
block = b"\0" * 4096
times = []
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
try:
    for _ in range(count):
        started = time.perf_counter()
        os.write(fd, block)
        os.fsync(fd)
        times.append(time.perf_counter() - started)
finally:
    os.close(fd)
    os.unlink(path)
times.sort()
at = lambda q: times[min(len(times) - 1, int(q * len(times)))] * 1000
print(f"fsync {at(0.5):.3f} {at(0.99):.3f} {times[-1] * 1000:.3f}")
