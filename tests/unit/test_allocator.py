"""Frame-sized buffers are reused after reuse_freed_buffers(), not page-faulted in afresh each time."""
import platform
import subprocess
import sys

import pytest

_CHURN = """
import resource, sys
from simreel.runtime.allocator import prefault, reuse_freed_buffers
if sys.argv[1] == "tuned":
    assert reuse_freed_buffers() and reuse_freed_buffers()
if sys.argv[1] == "prefaulted":
    assert reuse_freed_buffers() and prefault(20 * 1024 * 1024) == 20 * 1024 * 1024
def batch():  # a batch of decompressed 640x480 frames, written, then dropped
    return sum(len(f) for f in [b"\\x01" * 921_600 for _ in range(12)])
if sys.argv[1] != "prefaulted":
    batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    batch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _CHURN, mode], capture_output=True, text=True, check=True)
    return int(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's malloc only")
def test_freed_frames_are_reused_without_page_faults():
    default, tuned = _faults("default"), _faults("tuned")
    # 240 buffers of 225 pages each: glibc's defaults fault most of them in again
    assert default > 240 * 100
    assert tuned < default / 20


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's malloc only")
def test_prefaulted_heap_serves_the_first_frames_without_faults():
    # no warm-up batch here: the first 12 frames (11 MB) come out of the 20 MB touched at start
    assert _faults("prefaulted") < 240 * 225 / 20

