"""Which shard owns a VMI: the same hash kube-state-metrics shards its objects with.

Contract: pure; `shard_of(uid, total)` is in [0, total) and stable for a UID.
"""

from __future__ import annotations

from typing import Final


def shard_of(uid: str, total_shards: int) -> int:
    """The shard that owns the object with this UID, as kube-state-metrics shards.

    kube-state-metrics keeps an object when `jump.Hash(fnv64a(uid), totalShards) == shard`
    (kubernetes/kube-state-metrics: pkg/sharding/listwatch.go `sharding.keep`, unchanged since
    sharding was introduced): FNV-1a 64 of the UID bytes, then Jump Consistent Hash.
    """
    if total_shards < 1:
        raise ValueError(f"total shards must be at least 1, got {total_shards}")
    return jump_hash(fnv1a_64(uid.encode()), total_shards)


_FNV64_OFFSET: Final = 0xCBF29CE484222325
_FNV64_PRIME: Final = 0x100000001B3
_U64: Final = 0xFFFFFFFFFFFFFFFF


def fnv1a_64(data: bytes) -> int:
    """FNV-1a 64-bit hash (Fowler/Noll/Vo; Go's `hash/fnv.New64a`)."""
    value = _FNV64_OFFSET
    for byte in data:
        value = ((value ^ byte) * _FNV64_PRIME) & _U64
    return value


_JUMP_MULTIPLIER: Final = 2862933555777941757


def jump_hash(key: int, buckets: int) -> int:
    """Jump Consistent Hash of a 64-bit key into [0, buckets) (Lamping & Veach, 2014,
    arXiv:1406.2294). The float arithmetic is IEEE double, as in the paper's reference code."""
    bucket, candidate = -1, 0
    while candidate < buckets:
        bucket = candidate
        key = (key * _JUMP_MULTIPLIER + 1) & _U64
        candidate = int(float(bucket + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return bucket
