"""The response cache: exact and semantic, scoped by the caller's permissions.

* :class:`CachedModel` wraps any :class:`~groundwork.models.base.ChatModel`;
* :class:`CachedAnswerer` caches grounded answers, invalidated when documents change;
* :class:`CachedEmbedder` keeps recent embeddings;
* :class:`ResponseCache` does the lookups over a :class:`CacheStore` (SQLite by default, or Redis);
* :func:`cache_policy` / :func:`use_policy` set who is asking and what ``Cache-Control`` allows.
"""

from groundwork.cache.answers import CachedAnswerer
from groundwork.cache.context import CacheOutcome, CachePolicy, cache_policy, current_policy, use_policy
from groundwork.cache.core import CacheEvents, Hit, ResponseCache
from groundwork.cache.embeddings import CachedEmbedder
from groundwork.cache.keys import permission_scope
from groundwork.cache.model import CachedModel
from groundwork.cache.store import CacheStore

__all__ = [
    "CacheEvents",
    "CacheOutcome",
    "CachePolicy",
    "CacheStore",
    "CachedAnswerer",
    "CachedEmbedder",
    "CachedModel",
    "Hit",
    "ResponseCache",
    "cache_policy",
    "current_policy",
    "permission_scope",
    "use_policy",
]
