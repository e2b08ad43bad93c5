"""`sharding`: the shard of a VMI, exactly as kube-state-metrics shards objects."""

from __future__ import annotations

from collections import Counter

import pytest

from exporter.sharding import fnv1a_64, jump_hash, shard_of
from tests import builders as b


@pytest.mark.parametrize(
    ("data", "digest"),
    [
        (b"", 0xCBF29CE484222325),
        (b"a", 0xAF63DC4C8601EC8C),
        (b"foobar", 0x85944171F73967E8),
    ],
)
def test_fnv1a_64_matches_published_vectors(data: bytes, digest: int) -> None:
    assert fnv1a_64(data) == digest


# From Google's reference code, as listed by the implementation kube-state-metrics uses
# (dgryski/go-jump jump_test.go).
JUMP_VECTORS = [
    (0, [0] * 20),
    (1, [0, 0, 0, 0, 0, 0, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 17, 17]),
    (0xDEADBEEF, [0, 1, 2, 3, 3, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 16, 16, 16]),
    (0x0DDC0FFEEBADF00D, [0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 15, 15, 15, 15]),
]


@pytest.mark.parametrize(("key", "buckets"), JUMP_VECTORS)
def test_jump_hash_matches_the_reference_vectors(key: int, buckets: list[int]) -> None:
    assert [jump_hash(key, count) for count in range(1, len(buckets) + 1)] == buckets


def test_shard_of_agrees_with_kube_state_metrics_own_test() -> None:
    # kubernetes/kube-state-metrics pkg/sharding/listwatch_test.go: UID "test_uid" is kept by
    # shard 0 of 2, not by shard 1.
    assert shard_of("test_uid", 2) == 0


def test_every_uid_lands_in_exactly_one_shard_and_shards_are_balanced() -> None:
    uids = [b.uid_of("VirtualMachineInstance", "ns", f"vmi-{index}") for index in range(4000)]
    counts = Counter(shard_of(uid, 4) for uid in uids)
    assert set(counts) == {0, 1, 2, 3}
    assert all(800 < count < 1200 for count in counts.values())
    assert all(shard_of(uid, 1) == 0 for uid in uids[:50])


def test_growing_the_shard_count_moves_only_the_uids_that_go_to_the_new_shard() -> None:
    uids = [b.uid_of("VirtualMachineInstance", "ns", f"vmi-{index}") for index in range(1000)]
    for uid in uids:
        before, after = shard_of(uid, 4), shard_of(uid, 5)
        assert after in (before, 4)
