"""Token buckets per client: requests and rows, refilled over time, one client's use never
touching another's."""

from __future__ import annotations

import pytest

from mlship.serving.limits import ClientLimits, retry_after_header


def test_a_client_gets_its_burst_then_its_rate() -> None:
    limits = ClientLimits(10.0, None, burst_seconds=2.0, max_request_rows=100)
    allowed = [limits.admit("eve", now=0.0).allowed for _ in range(25)]
    assert allowed.count(True) == 20  # two seconds' worth saved up
    refused = limits.admit("eve", now=0.0)
    assert refused.outcome == "over_requests" and refused.retry_after == pytest.approx(0.1)
    assert limits.admit("eve", now=0.1).allowed  # one more token after a tenth of a second
    assert limits.admit("ana", now=0.1).allowed  # another client is untouched


def test_rows_are_taken_before_scoring_and_a_request_the_bucket_cannot_hold_waits() -> None:
    limits = ClientLimits(100.0, 1000.0, burst_seconds=1.0, max_request_rows=2000)
    assert limits.admit("eve", now=0.0).allowed
    assert limits.take_rows("eve", 2000, now=0.0).allowed  # a full bucket: the largest fits
    refused = limits.take_rows("eve", 500, now=0.0)  # nothing left: never overdrawn
    assert refused.outcome == "over_rows" and refused.retry_after == pytest.approx(0.5)
    assert not limits.take_rows("eve", 500, now=0.4).allowed
    assert limits.take_rows("eve", 500, now=0.5).allowed
    assert limits.take_rows("ana", 2000, now=0.5).allowed  # another client is untouched


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert retry_after_header(0.01) == b"1" and retry_after_header(2.2) == b"3"
