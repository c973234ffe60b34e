"""The composition root: the only place that turns :class:`Settings` into concrete parts.

Everything is built lazily on first use, so ``Container(settings)`` is cheap and a command that only
lists documents never loads a model. Providers are chosen through the registries below, not ``if`` chains.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path

from groundwork.cache import CachedAnswerer, CachedEmbedder, CachedModel, ResponseCache
from groundwork.cache.store import CacheStore
from groundwork.config import Deployment, Settings
from groundwork.errors import GroundworkError
from groundwork.gateway import DeploymentState, Health, Router
from groundwork.models.base import ChatModel, EmbeddingModel
from groundwork.models.fake import FakeChatModel, FakeEmbedder
from groundwork.models.http import SharedSession
from groundwork.observability import InstrumentedModel, Observability
from groundwork.rag.answer import Answerer
from groundwork.rag.ingest import Ingestor
from groundwork.rag.retrieval import Retriever
from groundwork.stores.faiss_index import FaissVectorStore
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

    return MiniLMEmbedder(batch_size=s.embeddings.batch_size)


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
    def router(self) -> Router:
        """The gateway: every configured model group behind one router."""
        r = self.settings.router
        groups = {
            name: [
                DeploymentState(d, CHAT_PROVIDERS[d.provider](d, self), Health(r.allowed_fails, r.cooldown_s))
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
        observability = Observability(o, self.data_dir)
        observability.metrics.callbacks.connections = self.http.open_connections
        return observability

    @cached_property
    def cache(self) -> ResponseCache | None:
        """The response cache (``None`` when ``cache.enabled`` is off)."""
        c = self.settings.cache
        if not c.enabled:
            return None
        embedder = self.query_embedder if c.semantic else None
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
    def documents(self) -> SQLiteDocumentStore:
        return SQLiteDocumentStore(self.data_dir / "groundwork.sqlite3")

    @cached_property
    def vectors(self) -> FaissVectorStore:
        index_dir = self.data_dir / "index"
        store = FaissVectorStore(
            self.embedder.dimensions, self.settings.storage.exact_search_below, directory=index_dir
        )
        store.load_or_rebuild(index_dir, self.documents)
        return store

    @cached_property
    def ingestor(self) -> Ingestor:
        return Ingestor(self.documents, self.vectors, self.embedder, self.settings.chunking)

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
        )
        return answerer if self.cache is None else CachedAnswerer.wrap(answerer, self.cache)

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
                "answerer",
                "router",
            ):
                getattr(self, part)

    async def aclose_clients(self) -> None:
        """Close the models and the HTTP client of the running event loop; the store stays open."""
        if "router" in self.__dict__:
            await self.router.aclose()
        if "http" in self.__dict__:
            await self.http.aclose()

    def close(self) -> None:
        """Close the store (models hold no OS resources beyond memory)."""
        if "documents" in self.__dict__:
            self.documents.close()
        if self.__dict__.get("cache") is not None:
            self.cache.close()  # type: ignore[union-attr]
        if self.__dict__.get("observability") is not None:
            self.observability.close()  # type: ignore[union-attr]
