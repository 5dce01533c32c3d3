"""keep_freed_memory sets glibc's malloc to keep freed memory, and is a no-op where it cannot."""

import ctypes
import sys

import pytest

from nerdistill import allocator


class FakeLibc:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return 1


def test_mmap_is_off_and_the_trim_threshold_is_raised(monkeypatch):
    libc = FakeLibc()
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(ctypes, "CDLL", lambda name: libc)
    assert allocator.keep_freed_memory()
    assert libc.calls == [(allocator.M_MMAP_MAX, 0), (allocator.M_TRIM_THRESHOLD, allocator.TRIM_THRESHOLD)]


def test_a_libc_without_mallopt_or_another_platform_is_left_alone(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(ctypes, "CDLL", lambda name: object())  # musl: no mallopt
    assert not allocator.keep_freed_memory()
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(ctypes, "CDLL", lambda name: pytest.fail("no libc is loaded off Linux"))
    assert not allocator.keep_freed_memory()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_the_real_glibc_accepts_the_setting():
    assert allocator.keep_freed_memory()
