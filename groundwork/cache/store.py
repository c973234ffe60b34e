"""The cache's storage seam: :class:`CacheStore`, a key-value store with TTL, an LRU bound and vectors.

Both backends (:class:`~groundwork.cache.sqlite.SQLiteCacheStore`, the default, and
:class:`~groundwork.cache.redis.RedisCacheStore`) pass the suite in :mod:`groundwork.testing.cache`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


@runtime_checkable
class CacheStore(Protocol):
    """Entries are bytes under string keys. An entry may belong to a semantic *bucket* with a vector.

    * ``get`` returns ``None`` for a missing or expired entry and marks a found one recently used;
    * ``put`` replaces an entry and, when more than ``max_entries`` are stored, evicts the least
      recently used ones;
    * ``vectors(bucket)`` lists the keys and vectors of a bucket's entries; it may still list an entry
      that just expired (``get`` is authoritative), never one that was deleted or evicted.

    Failures raise :class:`~groundwork.errors.StorageError`.
    """

    max_entries: int

    def get(self, key: str) -> bytes | None: ...

    def put(
        self,
        key: str,
        value: bytes,
        ttl_s: float,
        bucket: str | None = None,
        vector: FloatArray | None = None,
    ) -> None: ...

    def delete(self, key: str) -> None: ...

    def vectors(self, bucket: str) -> tuple[list[str], FloatArray]: ...

    def clear(self) -> None:
        """Remove every entry of this store (only this store's, for a shared server)."""

    def __len__(self) -> int: ...

    def close(self) -> None: ...


def empty_vectors() -> tuple[list[str], FloatArray]:
    """No keys and a ``0 x 0`` matrix."""
    return [], np.zeros((0, 0), dtype=np.float32)


def to_bytes(vector: FloatArray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


def stack(keys: list[str], blobs: list[bytes]) -> tuple[list[str], FloatArray]:
    """Keys and the matrix of their vectors (rows of equal length only; others are skipped)."""
    if not blobs:
        return empty_vectors()
    width = len(blobs[0])
    kept = [(k, b) for k, b in zip(keys, blobs, strict=True) if len(b) == width]
    matrix = np.frombuffer(b"".join(b for _, b in kept), dtype=np.float32).reshape(len(kept), -1)
    return [k for k, _ in kept], matrix
