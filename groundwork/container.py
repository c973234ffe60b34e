"""The composition root: the only place that turns :class:`Settings` into concrete parts.

Everything is built lazily on first use, so ``Container(settings)`` is cheap and a command that only
lists documents never loads a model. Providers are chosen through the registries below, not ``if`` chains.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from groundwork.cache import CachedAnswerer, CachedEmbedder, CachedModel, ResponseCache
from groundwork.cache.store import CacheStore
from groundwork.config import Deployment, Settings
from groundwork.errors import GroundworkError
from groundwork.evals.assertions import Evaluator
from groundwork.evals.judge import LLMJudge
from groundwork.evals.targets import EvalDeps
from groundwork.gateway import DeploymentState, Health, Router
from groundwork.gateway.health_state import HealthState, MemoryHealthState
from groundwork.models.base import ChatModel, EmbeddingModel
from groundwork.models.fake import FakeChatModel, FakeEmbedder
from groundwork.models.http import SharedSession
from groundwork.observability import InstrumentedModel, Observability, TraceStorage
from groundwork.prompts.builtin import BUILTIN_PROMPTS, EVAL_JUDGE
from groundwork.prompts.registry import PromptRegistry
from groundwork.prompts.sqlite_store import SQLitePromptStore
from groundwork.prompts.store import PromptStore
from groundwork.rag.answer import Answerer
from groundwork.rag.ingest import Ingestor, IngestReport
from groundwork.rag.retrieval import Retriever
from groundwork.security.guards import Guards
from groundwork.security.permissions import DocumentGroupsPolicy
from groundwork.security.ratelimit import CounterStore, MemoryCounterStore
from groundwork.security.redis_counters import RedisCounterStore
from groundwork.security.service import Security, open_sqlite_security
from groundwork.security.store import SecurityDatabase
from groundwork.stores.faiss_index import FaissVectorStore
from groundwork.stores.protocols import DocumentStore, VectorStore
from groundwork.stores.sqlite import SQLiteDocumentStore
from groundwork.types import Message

logger = logging.getLogger("groundwork.container")


def _fake_rag_responder(messages: Sequence[Message]) -> str:
    """The fake model's answer: the first sentence of source [1], or an echo without sources."""
    last = messages[-1].content if messages else ""
    match = re.search(r"\[1\][^\n]*\n(.+?[.!?])(\s|$)", last, re.S)
    return match.group(1).strip() if match else last


def _embedded_chat(d: Deployment, c: Container) -> ChatModel:
    from groundwork.models.embedded import SmolLMChatModel

    # One in-process model per model name, however many groups list it.
    key = f"embedded:{d.model}"
    if key not in c.shared_models:
        c.shared_models[key] = SmolLMChatModel(c.settings.models_dir, name=d.model)
    return c.shared_models[key]


def _openai_chat(d: Deployment, c: Container) -> ChatModel:
    from groundwork.models.openai_compat import OpenAICompatibleChatModel

    assert d.base_url is not None  # checked by the settings
    return OpenAICompatibleChatModel(d.model, d.base_url, d.api_key_env, d.timeout_s, clients=c.http)


CHAT_PROVIDERS: dict[str, Callable[[Deployment, Container], ChatModel]] = {
    "embedded": _embedded_chat,
    "openai": _openai_chat,
    "fake": lambda d, c: FakeChatModel(name=d.model, responder=_fake_rag_responder),
}
"""Provider name -> factory of a deployment's model. Register a provider by adding to this mapping."""


def _minilm(s: Settings) -> EmbeddingModel:
    from groundwork.models.embedded import MiniLMEmbedder

    return MiniLMEmbedder(
        batch_size=s.embeddings.batch_size,
        precision=s.embeddings.precision,
        query_runtime=s.embeddings.query_runtime,
        query_precision=s.embeddings.query_precision,
        cache_dir=s.models_dir,
    )


def _openai_embedder(s: Settings) -> EmbeddingModel:
    from groundwork.models.openai_embeddings import OpenAICompatibleEmbedder

    e = s.embeddings
    assert e.base_url is not None  # checked by the settings
    return OpenAICompatibleEmbedder(e.model, e.base_url, e.dimensions, e.api_key_env, batch_size=e.batch_size)


EMBEDDING_PROVIDERS: dict[str, Callable[[Settings], EmbeddingModel]] = {
    "minilm": _minilm,
    "fake": lambda s: FakeEmbedder(s.embeddings.dimensions),
    "openai": _openai_embedder,
}


@dataclass(frozen=True, slots=True)
class StorageBackend:
    """How a ``storage.backend`` builds its document store and the vector store beside it."""

    documents: Callable[[Container], DocumentStore]
    vectors: Callable[[Container], VectorStore]
    migrate: Callable[[Container], list[str]]
    """Apply pending schema migrations; describe what was done (``groundwork migrate``)."""


def _faiss(c: Container) -> VectorStore:
    index_dir = c.data_dir / "index"
    store = FaissVectorStore(
        c.embedder.dimensions, c.settings.storage.exact_search_below, directory=index_dir
    )
    store.load_or_rebuild(index_dir, c.documents)
    return store


def _postgres_documents(c: Container) -> DocumentStore:
    from groundwork.stores.postgres import open_document_store

    return open_document_store(c.settings.storage.postgres, c.embedder.dimensions)


def _postgres_vectors(c: Container) -> VectorStore:
    from groundwork.stores.postgres import vector_store_beside

    return vector_store_beside(c.documents, c.settings.storage.postgres)


def _postgres_migrate(c: Container) -> list[str]:
    from groundwork.observability.postgres_store import open_trace_database
    from groundwork.prompts.postgres_store import open_prompt_database
    from groundwork.security.postgres_store import open_security_database
    from groundwork.stores.postgres import open_document_database

    db = open_document_database(c.settings.storage.postgres, c.embedder.dimensions, migrate=True)
    db.close()
    prompts = open_prompt_database(c.settings.storage.postgres, migrate=True)
    prompts.close()
    security = open_security_database(c.settings.storage.postgres, migrate=True)
    security.close()
    traces = open_trace_database(c.settings.storage.postgres, migrate=True)
    traces.close()
    applied = [f"applied {m}" for m in db.applied] + [f"applied prompts {m}" for m in prompts.applied]
    applied += [f"applied security {m}" for m in security.applied]
    applied += [f"applied traces {m}" for m in traces.applied]
    return applied or ["the PostgreSQL schema is up to date"]


def _embedded_documents(c: Container) -> DocumentStore:
    return SQLiteDocumentStore(
        c.data_dir / "groundwork.sqlite3", heading_weight=c.settings.retrieval.heading_weight
    )


def _embedded_migrate(c: Container) -> list[str]:
    c.documents  # noqa: B018 - SQLite files migrate when they open
    return ["the embedded store migrates when it opens: up to date"]


STORAGE_BACKENDS: dict[str, StorageBackend] = {
    "embedded": StorageBackend(_embedded_documents, _faiss, _embedded_migrate),
    "postgres": StorageBackend(_postgres_documents, _postgres_vectors, _postgres_migrate),
}
"""``storage.backend`` -> how to build its stores. Register a backend by adding to this mapping."""


def _postgres_prompts(c: Container) -> PromptStore:
    from groundwork.prompts.postgres_store import PostgresPromptStore

    return PostgresPromptStore.open(c.settings.storage.postgres)


PROMPT_STORES: dict[str, Callable[[Container], PromptStore]] = {
    "embedded": lambda c: SQLitePromptStore(c.data_dir / "prompts.sqlite3"),
    "postgres": _postgres_prompts,
}
"""``storage.backend`` -> where the prompt registry keeps versions and labels."""


def _postgres_security(c: Container) -> SecurityDatabase:
    from groundwork.security.postgres_store import PostgresSecurityDatabase

    return PostgresSecurityDatabase.open(c.settings.storage.postgres)


SECURITY_DATABASES: dict[str, Callable[[Container], SecurityDatabase]] = {
    "embedded": lambda c: open_sqlite_security(c.data_dir),
    "postgres": _postgres_security,
}
"""``storage.backend`` -> where API keys and the audit log are kept."""


def postgres_trace_store(s: Settings) -> TraceStorage:
    """The trace store in the shared PostgreSQL (also used by ``groundwork traces``)."""
    from groundwork.observability.postgres_store import PostgresTraceStore

    return PostgresTraceStore.open(s.storage.postgres, s.observability.trace_retention)


TRACE_STORES: dict[str, Callable[[Settings], TraceStorage]] = {"postgres": postgres_trace_store}
"""``storage.backend`` -> trace store of spans and feedback (absent: ``<data_dir>/traces.sqlite3``)."""


def _redis_health(s: Settings) -> HealthState:
    from groundwork.gateway.redis_health import RedisHealthState

    return RedisHealthState(s.redis_url)


HEALTH_STATES: dict[str, Callable[[Settings], HealthState]] = {
    "memory": lambda s: MemoryHealthState(),
    "redis": _redis_health,
}
"""``router.health_state`` -> where deployments' cooldowns are kept."""


COUNTER_BACKENDS: dict[str, Callable[[Settings], CounterStore]] = {
    "memory": lambda s: MemoryCounterStore(),
    "redis": lambda s: RedisCounterStore(s.redis_url, s.security.rate_limits.key_prefix),
}
"""``security.rate_limits.backend`` -> factory of the rate limiter's counter store."""


def _sqlite_cache(s: Settings) -> CacheStore:
    from groundwork.cache.sqlite import SQLiteCacheStore

    return SQLiteCacheStore(s.data_dir / "cache.sqlite3", s.cache.max_entries)


def _redis_cache(s: Settings) -> CacheStore:
    from groundwork.cache.redis import RedisCacheStore

    return RedisCacheStore(s.redis_url, s.cache.key_prefix, s.cache.max_entries)


CACHE_BACKENDS: dict[str, Callable[[Settings], CacheStore]] = {"sqlite": _sqlite_cache, "redis": _redis_cache}


class Container:
    """Holds the application's parts for one data dir. Close it when done."""

    def __init__(
        self, settings: Settings, chat_model: ChatModel | None = None, embedder: EmbeddingModel | None = None
    ) -> None:
        self.settings = settings
        self._build_lock = threading.RLock()
        if chat_model is not None:
            self.__dict__["chat_model"] = chat_model
        if embedder is not None:
            self.__dict__["embedder"] = embedder

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    @cached_property
    def embedder(self) -> EmbeddingModel:
        return EMBEDDING_PROVIDERS[self.settings.embeddings.provider](self.settings)

    @cached_property
    def http(self) -> SharedSession:
        """The pooled HTTP session every remote provider shares."""
        return SharedSession()

    @cached_property
    def shared_models(self) -> dict[str, ChatModel]:
        return {}

    @cached_property
    def health_state(self) -> HealthState:
        """Where the router's cooldowns live (``router.health_state``: this process, or Redis)."""
        return HEALTH_STATES[self.settings.router.health_state](self.settings)

    @cached_property
    def router(self) -> Router:
        """The gateway: every configured model group behind one router."""
        r = self.settings.router
        groups = {
            name: [
                DeploymentState(
                    d,
                    CHAT_PROVIDERS[d.provider](d, self),
                    Health(r.allowed_fails, r.cooldown_s, self.health_state, f"{name}/{d.name}"),
                )
                for d in deployments
            ]
            for name, deployments in self.settings.models.groups.items()
        }
        return Router(groups, r, listener=self.observability.metrics if self.observability else None)

    @cached_property
    def observability(self) -> Observability | None:
        """Metrics, tracing and the trace store (``None`` when ``observability.enabled`` is off)."""
        o = self.settings.observability
        if not o.enabled:
            return None
        open_store = TRACE_STORES.get(self.settings.storage.backend)
        observability = Observability(
            o, self.data_dir, open_store=open_store and (lambda: open_store(self.settings))
        )
        observability.metrics.callbacks.connections = self.http.open_connections
        return observability

    @cached_property
    def cache(self) -> ResponseCache | None:
        """The response cache (``None`` when ``cache.enabled`` is off)."""
        c = self.settings.cache
        if not c.enabled:
            return None
        embedder = self.cache_embedder if c.semantic else None
        events = self.observability.metrics if self.observability else None
        try:
            store = CACHE_BACKENDS[c.backend](self.settings)
        except (OSError, GroundworkError) as exc:  # serve without the cache; /readyz reports it
            logger.error("the response cache cannot be opened, serving without it: %s", exc)
            return None
        return ResponseCache(store, c, embedder, events)

    def chat_model_for(self, group: str | None = None) -> ChatModel:
        """The chat model of a model group (default: ``models.default_group``):
        ``Instrumented(Cached(Router))``, each layer present when configured.

        Raises :class:`~groundwork.errors.NotFoundError` for a group that is not configured.
        """
        model: ChatModel = self.router.model(group or self.settings.models.default_group)
        if self.cache is not None:
            model = CachedModel(model, self.cache)
        if self.observability is not None:
            model = InstrumentedModel(model, self.observability.metrics)
        return model

    @cached_property
    def chat_model(self) -> ChatModel:
        return self.chat_model_for(None)

    @cached_property
    def documents(self) -> DocumentStore:
        return STORAGE_BACKENDS[self.settings.storage.backend].documents(self)

    @cached_property
    def vectors(self) -> VectorStore:
        return STORAGE_BACKENDS[self.settings.storage.backend].vectors(self)

    def migrate(self) -> list[str]:
        """Apply the storage backend's pending schema migrations; lines describing what was done."""
        return STORAGE_BACKENDS[self.settings.storage.backend].migrate(self)

    @cached_property
    def ingestor(self) -> Ingestor:
        sec = self.settings.security
        policy = DocumentGroupsPolicy.from_config(sec.default_document_groups, sec.folder_groups)
        return Ingestor(
            self.documents,
            self.vectors,
            self.embedder,
            self.settings.chunking,
            groups_for=policy.groups_for,
            on_report=self._count_ingestion,
        )

    def _count_ingestion(self, report: IngestReport) -> None:
        obs = self.observability
        if obs is not None:
            written = len(report.added) + len(report.updated)
            obs.metrics.ingestion(written, len(report.failed), report.chunks_written)

    @cached_property
    def cache_embedder(self) -> EmbeddingModel:
        """The embedder of the semantic cache's questions: with the embedded MiniLM and
        ``cache.semantic_precision: int8``, its int8 ONNX model for short calls (an LRU of its own);
        otherwise :attr:`query_embedder`, shared with retrieval."""
        from groundwork.models.embedded import MiniLMEmbedder

        embedder = self.embedder
        if (
            self.settings.cache.semantic_precision == "int8"
            and isinstance(embedder, MiniLMEmbedder)
            and embedder.query_precision != "int8"
        ):
            return CachedEmbedder(embedder.short_calls("int8"))
        return self.query_embedder

    @cached_property
    def query_embedder(self) -> EmbeddingModel:
        """The embedder of questions: with the cache on, one LRU shared by the semantic cache and
        retrieval, so a question is embedded once for both."""
        return CachedEmbedder(self.embedder) if self.settings.cache.enabled else self.embedder

    @cached_property
    def retriever(self) -> Retriever:
        return Retriever(self.documents, self.vectors, self.query_embedder, self.settings.retrieval)

    @cached_property
    def answerer(self) -> Answerer:
        answerer = Answerer(
            self.retriever,
            self.chat_model,
            self.embedder,
            self.settings.answer,
            self.settings.retrieval.min_vector_score,
            prompts=self.prompts,
            prompt_ref=self.settings.prompts.answer_prompt,
            screen=lambda chunks: self.guards.screen_chunks(chunks)[0],
        )
        return answerer if self.cache is None else CachedAnswerer.wrap(answerer, self.cache)

    @cached_property
    def prompts(self) -> PromptRegistry:
        """The prompt registry (``<data_dir>/prompts.sqlite3``, or PostgreSQL), seeded with the built-ins."""
        registry = PromptRegistry(PROMPT_STORES[self.settings.storage.backend](self))
        if self.settings.prompts.seed:
            with getattr(registry.store, "exclusive", nullcontext)():  # replicas seed one at a time
                registry.seed(BUILTIN_PROMPTS)
        return registry

    def eval_deps(self) -> EvalDeps:
        """What evaluation targets are built from: the registry, the models and the answerer."""
        return EvalDeps(
            self.prompts,
            self.chat_model_for,
            lambda: self.answerer,
            self.embedder,
            self.settings.prompts.answer_prompt,
        )

    def evaluator(self) -> Evaluator:
        """The embedder and the LLM judge (``evals.judge@production`` on ``prompts.judge_model``)."""
        p = self.settings.prompts
        judge = self.prompts.get(EVAL_JUDGE, "production")
        model = self.chat_model_for(p.judge_model)
        return Evaluator(
            self.embedder,
            LLMJudge(model, judge.template, p.judge_attempts, judge.ref),
            self.settings.answer.min_support,
        )

    def degraded(self) -> list[str]:
        """Shared services failing while this replica still serves (e.g. Redis down); blocking."""
        problems = getattr(self.__dict__.get("health_state"), "problems", None)
        found = list(problems()) if callable(problems) else []
        limits = self.settings.security.rate_limits
        if limits.backend == "redis" and "security" in self.__dict__:
            from groundwork.stores.redis_client import redis_problem

            problem = redis_problem(self.settings.redis_url)
            if problem is not None:
                found.append(f"rate limits ({limits.on_backend_error} while down): {problem}")
        return found

    @cached_property
    def guards(self) -> Guards:
        """Input, retrieved-chunk and output guards (``security.guards``)."""
        return Guards(self.settings.security.guards)

    @cached_property
    def security(self) -> Security:
        """API keys, audit log (by ``storage.backend``) and rate limiter (``security.*``)."""
        counters = COUNTER_BACKENDS[self.settings.security.rate_limits.backend](self.settings)
        db = SECURITY_DATABASES[self.settings.storage.backend](self)
        return Security(self.settings.security, self.data_dir, counters, self.guards, db)

    def warm_up(self) -> None:
        """Build the store, the vector index and the RAG parts now, in one thread.

        The parts are built lazily; a server calls this once at start so that two first requests never
        race to build them (``functools.cached_property`` is not locked on Python 3.12+).
        """
        with self._build_lock:
            for part in (
                "observability",
                "cache",
                "documents",
                "vectors",
                "ingestor",
                "retriever",
                "prompts",
                "answerer",
                "router",
                "security",
            ):
                getattr(self, part)
            prepare = getattr(self.vectors, "prepare", None)  # a capability of the embedded index only
            if prepare is not None:
                prepare()  # the HNSW graph, when loading did not bring it: no query waits for it

    async def aclose_clients(self) -> None:
        """Close the models and the HTTP client of the running event loop; the store stays open."""
        if "router" in self.__dict__:
            await self.router.aclose()
        if "http" in self.__dict__:
            await self.http.aclose()
        if "security" in self.__dict__:
            await self.security.aclose()

    def close(self) -> None:
        """Close the store (models hold no OS resources beyond memory)."""
        if "documents" in self.__dict__:
            self.documents.close()
        if "prompts" in self.__dict__:
            self.prompts.close()
        if "security" in self.__dict__:
            self.security.close()
        if self.__dict__.get("cache") is not None:
            self.cache.close()  # type: ignore[union-attr]
        if self.__dict__.get("observability") is not None:
            self.observability.close()  # type: ignore[union-attr]
