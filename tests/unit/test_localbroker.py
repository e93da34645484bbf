"""The throwaway KRaft broker's cluster IDs (the real format run is in tests/integration)."""

from __future__ import annotations

import re

from tests.harness.kafka import _cluster_id


def test_cluster_ids_never_start_with_a_dash() -> None:
    # One base64 ID in 64 starts with "-"; kafka-storage then took it for an option and the
    # broker never started (CI, stop 8). 5000 draws miss a "-" with probability 1e-34.
    ids = [_cluster_id() for _ in range(5000)]
    assert not [i for i in ids if i.startswith("-")]
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", i) for i in ids)
    assert len(set(ids)) == len(ids)
