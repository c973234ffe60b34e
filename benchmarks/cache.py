"""Response cache: hit latency (exact and semantic) and the semantic cache's wrong-hit share.

    .venv/bin/python benchmarks/cache.py                       # MiniLM, SQLite and Redis (if reachable)
    .venv/bin/python benchmarks/cache.py --embedder fake --backends sqlite     # quick, no model

Latency: a store filled with ``--entries`` entries (all in one semantic bucket, the worst case for a
semantic lookup), then ``--repeats`` timed lookups through the real code path
(:meth:`ResponseCache.lookup` and :meth:`CachedModel.generate`):

* **exact hit**: the same request again (key canonicalisation, the store read, JSON decoding);
* **semantic hit, query embedding cached**: a paraphrase whose embedding the :class:`CachedEmbedder`
  already holds (the cache's own work: exact miss, the bucket's vectors, one matrix product over
  ``--entries`` rows, the false-hit guard, the entry read);
* **semantic hit, cold**: the same with the paraphrase embedded afresh (adds one embedder call).

Quality: ``benchmarks/cache_pairs.yaml`` (see its header): for each cached question, paraphrases that should
hit and look-alikes that must not (negation, number, entity, opposite, modifier). For each threshold it
reports, with the guard and without it: the share of paraphrases served from the cache (hit rate) and
the share of served hits that were wrong (wrong hits / all hits), plus wrong hits by kind.
The configured threshold (``cache.semantic_threshold``, default 0.92) is also run end to end through
:class:`ResponseCache` to check that the offline sweep matches the real lookup.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from groundwork.cache import CachedEmbedder, CachedModel, ResponseCache, cache_policy
from groundwork.cache.guard import guard_reason
from groundwork.cache.keys import chat_keys
from groundwork.cache.store import CacheStore
from groundwork.config import CacheSettings
from groundwork.models.base import EmbeddingModel
from groundwork.models.fake import FakeChatModel, FakeEmbedder
from groundwork.types import Message

HERE = Path(__file__).resolve().parent
PAIRS = HERE / "cache_pairs.yaml"
HELD_OUT = HERE / "cache_pairs_heldout.yaml"


def embedder_of(
    name: str, precision: str = "auto", query_runtime: str = "auto", query_precision: str = "fp32"
) -> EmbeddingModel:
    if name == "fake":
        return FakeEmbedder(384)
    from groundwork.models.embedded import MiniLMEmbedder

    return MiniLMEmbedder(
        precision=precision,  # type: ignore[arg-type]
        query_runtime=query_runtime,  # type: ignore[arg-type]
        query_precision=query_precision,  # type: ignore[arg-type]
    )


def store_of(backend: str, directory: Path, max_entries: int) -> CacheStore:
    if backend == "redis":
        from groundwork.cache.redis import RedisCacheStore

        store = RedisCacheStore("redis://127.0.0.1:6379", f"gw:bench:{uuid.uuid4().hex}:", max_entries)
        store.ping()
        return store
    from groundwork.cache.sqlite import SQLiteCacheStore

    return SQLiteCacheStore(directory / f"cache-{uuid.uuid4().hex}.sqlite3", max_entries)


def _ms(samples: list[float]) -> str:
    s = sorted(samples)
    return f"{statistics.median(s) * 1000:.3f} / {s[int(0.95 * (len(s) - 1))] * 1000:.3f}"


def latency(backend: str, embedder: EmbeddingModel, entries: int, repeats: int, directory: Path) -> list[str]:
    """Rows of the latency table for one backend."""
    settings = CacheSettings(enabled=True, semantic_threshold=0.5, max_entries=entries + 10)
    cached_embedder = CachedEmbedder(embedder, max_entries=entries + 100)
    cache = ResponseCache(store_of(backend, directory, entries + 10), settings, cached_embedder)
    rng = np.random.default_rng(0)
    # Filler entries in one bucket: random unit vectors, so the matrix product covers `entries` rows.
    filler = rng.normal(size=(entries, embedder.dimensions)).astype(np.float32)
    filler /= np.linalg.norm(filler, axis=1, keepdims=True)
    question = "How many days of annual leave do employees get?"
    paraphrase = "How many annual leave days do employees get?"
    key, bucket = chat_keys("bench", [Message("user", question)], None, "admin")
    for i in range(entries - 1):
        cache.store.put(f"filler-{i}", b'{"text": "x", "query": "filler"}', 3600, bucket, filler[i])
    cache.put(
        key,
        bucket,
        question,
        {"text": "25 days", "model": "bench", "usage": [1, 2, 0.0], "finish_reason": "stop"},
    )
    pkey, _ = chat_keys("bench", [Message("user", paraphrase)], None, "admin")

    def timed(fn: Any, n: int) -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
        return out

    exact = timed(lambda: cache.lookup("chat", key, bucket, question), repeats)
    assert cache.lookup("chat", pkey, bucket, paraphrase) is not None, "the paraphrase must hit"
    warm = timed(lambda: cache.lookup("chat", pkey, bucket, paraphrase), repeats)

    def cold() -> None:
        cached_embedder._vectors.pop(paraphrase, None)
        cache.lookup("chat", pkey, bucket, paraphrase)

    cold_samples = timed(cold, max(20, repeats // 20))
    model = CachedModel(FakeChatModel(name="bench"), cache)

    async def through_model(n: int) -> list[float]:
        out = []
        with cache_policy():
            msgs = [Message("user", question)]
            for _ in range(n):
                t0 = time.perf_counter()
                await model.generate(msgs)
                out.append(time.perf_counter() - t0)
        return out

    # CachedModel keys with its own (default) options: store once, then time the hits.
    asyncio.run(through_model(1))
    via_model = asyncio.run(through_model(repeats))
    cache.store.clear()
    cache.close()
    return [
        f"| {backend} | exact hit (ResponseCache.lookup) | {_ms(exact)} |",
        f"| {backend} | exact hit (CachedModel.generate) | {_ms(via_model)} |",
        f"| {backend} | semantic hit, query embedding cached, {entries} vectors | {_ms(warm)} |",
        f"| {backend} | semantic hit, cold (+ {embedder.name} embedding), {entries} vectors "
        f"| {_ms(cold_samples)} |",
    ]


def quality(
    embedder: EmbeddingModel, thresholds: list[float], configured: float, directory: Path, pairs: Path
) -> list[str]:
    groups = yaml.safe_load(pairs.read_text())
    rows: list[dict[str, Any]] = []
    for g in groups:
        texts = [g["q"], *g["same"], *(d[0] for d in g["different"])]
        vecs = embedder.embed(texts)
        sims = vecs[1:] @ vecs[0]
        kinds = ["same"] * len(g["same"]) + [d[1] for d in g["different"]]
        for text, kind, sim in zip(texts[1:], kinds, sims, strict=True):
            rows.append({"cached": g["q"], "query": text, "kind": kind, "sim": float(sim)})
    for r in rows:
        r["guard"] = guard_reason(r["query"], r["cached"])
    n_same = sum(r["kind"] == "same" for r in rows)
    n_diff = len(rows) - n_same
    lines = [
        f"Set: {len(groups)} cached questions, {n_same} paraphrases (should hit), {n_diff} look-alikes "
        f"(must not): {dict(Counter(r['kind'] for r in rows if r['kind'] != 'same'))}.",
        "",
        "| threshold | guard | paraphrase hit rate | wrong hits / all hits | wrong hits by kind |",
        "|---:|---|---:|---:|---|",
    ]
    for t in thresholds:
        for guarded in (False, True):
            hits = [r for r in rows if r["sim"] >= t and (r["guard"] is None or not guarded)]
            right = sum(r["kind"] == "same" for r in hits)
            wrong = [r for r in hits if r["kind"] != "same"]
            share = len(wrong) / len(hits) if hits else 0.0
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(Counter(r["kind"] for r in wrong).items())) or "-"
            lines.append(
                f"| {t:.2f} | {'on' if guarded else 'off'} | {right}/{n_same} = {right / n_same:.1%} | "
                f"{len(wrong)}/{len(hits)} = {share:.1%} | {kinds} |"
            )
    blocked_right = [r for r in rows if r["kind"] == "same" and r["guard"] is not None]
    lines += [
        "",
        f"Paraphrases the guard refused (its cost in hit rate, any threshold): "
        f"{len(blocked_right)} of {n_same}"
        + (
            ": " + "; ".join(f"{r['query']!r} ({r['guard']})" for r in blocked_right[:5])
            if blocked_right
            else ""
        ),
    ]
    lines.append(_end_to_end(rows, embedder, configured, directory))
    return lines


def _end_to_end(
    rows: list[dict[str, Any]], embedder: EmbeddingModel, threshold: float, directory: Path
) -> str:
    """The configured threshold through ResponseCache itself (must agree with the offline sweep)."""
    settings = CacheSettings(enabled=True, semantic_threshold=threshold)
    agree = 0
    for r in rows:
        cache = ResponseCache(store_of("sqlite", directory, 100), settings, CachedEmbedder(embedder))
        key, bucket = chat_keys("bench", [Message("user", r["cached"])], None, "admin")
        cache.put(key, bucket, r["cached"], {"text": "a"})
        qkey, _ = chat_keys("bench", [Message("user", r["query"])], None, "admin")
        hit = cache.lookup("chat", qkey, bucket, r["query"]) is not None
        agree += hit == (r["sim"] >= threshold and r["guard"] is None)
        cache.close()
    return (
        f"End to end through ResponseCache at {threshold:.2f}: "
        f"{agree}/{len(rows)} lookups agree with the sweep."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--embedder", choices=["minilm", "fake"], default="minilm")
    parser.add_argument("--backends", default="sqlite,redis")
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--thresholds", default="0.80,0.85,0.90,0.92,0.95")
    parser.add_argument("--precision", default="auto", help="MiniLM precision: auto, fp32, bf16, int8")
    parser.add_argument(
        "--query-runtime", default="auto", help="what embeds the questions: auto (ONNX Runtime), onnx, torch"
    )
    parser.add_argument(
        "--query-precision",
        default="int8",
        help="weights of the ONNX model for the questions: int8 (the cache's default, semantic_precision) "
        "or fp32 (retrieval's, as with semantic_precision: same)",
    )
    args = parser.parse_args()
    embedder = embedder_of(args.embedder, args.precision, args.query_runtime, args.query_precision)
    embedder.embed(["warm up"])
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        print(
            f"## Cache latency ({args.embedder} embedder, {args.precision}, questions on"
            f" {getattr(embedder, 'short_call_runtime', '-')} ({args.query_precision}),"
            f" {args.entries} entries,"
            f" {args.repeats} lookups)\n"
        )
        print("| backend | lookup | median / p95 ms |\n|---|---|---:|")
        for backend in args.backends.split(","):
            try:
                print("\n".join(latency(backend, embedder, args.entries, args.repeats, directory)))
            except Exception as exc:  # e.g. Redis not running: say so and go on
                print(f"| {backend} | skipped: {type(exc).__name__}: {exc} | - |")
        thresholds = [float(t) for t in args.thresholds.split(",")]
        for pairs in (PAIRS, HELD_OUT):
            print(f"\n## Semantic cache quality ({args.embedder} embedder, {pairs.name})\n")
            print(
                "\n".join(quality(embedder, thresholds, CacheSettings().semantic_threshold, directory, pairs))
            )


if __name__ == "__main__":
    main()
