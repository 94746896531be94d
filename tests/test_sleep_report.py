"""The peak-memory figure a night reports is the night's own."""

from __future__ import annotations

import sys

import pytest

from sleep.report import peak_rss_bytes, reset_peak_rss


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_a_reset_peak_forgets_what_the_process_did_before() -> None:
    big = bytearray(400 * 2**20)
    big[::4096] = b"x" * len(big[::4096])  # touch every page
    before = peak_rss_bytes()
    del big
    assert reset_peak_rss()
    assert peak_rss_bytes() < before - 200 * 2**20
