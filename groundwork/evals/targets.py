"""What a suite runs against: the RAG pipeline, a prompt version on a model, or a model group.

``groundwork eval SUITE --compare A B`` names two *variants* of the suite's target: prompt references
(``2``, ``staging``, ``rag.answer@3``) for RAG and prompt targets, model groups for model targets;
``model:GROUP`` picks a model group for any target.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from groundwork.evals.rag_metrics import Context
from groundwork.evals.results import CaseOutput
from groundwork.evals.suite import Case, Suite
from groundwork.models.base import ChatModel, EmbeddingModel
from groundwork.prompts.registry import PromptRegistry, parse_ref
from groundwork.prompts.store import PromptVersion
from groundwork.rag.answer import Answerer
from groundwork.types import LOCAL_ADMIN, GenerationOptions, Message, Principal


class Target(Protocol):
    """Runs one case. ``rag`` targets also report retrieved contexts, so RAG metrics apply."""

    name: str
    rag: bool

    async def run(self, case: Case) -> CaseOutput:
        """The output for ``case``; exceptions make the case broken (the suite goes on)."""
        ...


@dataclass(frozen=True)
class EvalDeps:
    """The parts of the application a target is built from (the CLI takes them from the container)."""

    prompts: PromptRegistry
    chat_model_for: Callable[[str | None], ChatModel]
    answerer: Callable[[], Answerer]
    embedder: EmbeddingModel
    answer_prompt: str = "rag.answer@production"


class RagTarget:
    """The grounded-answer pipeline on a collection, as ``principal`` (whose documents it may read)."""

    rag = True

    def __init__(self, answerer: Answerer, collection: str, principal: Principal, name: str) -> None:
        self.answerer = answerer
        self.collection = collection
        self.principal = principal
        self.name = name

    async def run(self, case: Case) -> CaseOutput:
        assert case.question is not None  # checked by the suite
        started = time.perf_counter()
        answer = await self.answerer.ask(case.question, self.collection, self.principal)
        latency = time.perf_counter() - started
        retrieval = await asyncio.to_thread(
            self.answerer.retriever.retrieve, case.question, self.collection, self.principal
        )
        contexts = tuple(
            Context(sc.chunk.document_id, sc.chunk.source, sc.chunk.text)
            for sc in retrieval.chunks[: self.answerer.context_chunks]
        )
        citations = tuple(Context(c.document_id, c.source, c.quote) for c in answer.citations)
        return CaseOutput(
            answer.text,
            latency,
            answer.usage.cost,
            citations,
            contexts,
            answer.mode,
            answer.prompt,
            draft=answer.draft,
        )


class PromptTarget:
    """One prompt version rendered with each case's ``vars`` and sent to a model."""

    rag = False

    def __init__(self, version: PromptVersion, model: ChatModel) -> None:
        self.version = version
        self.model = model
        self.name = f"{version.ref} on {model.name}"

    async def run(self, case: Case) -> CaseOutput:
        messages = self.version.template.render_messages(case.vars)
        cfg = self.version.template.model
        options = GenerationOptions(max_tokens=cfg.max_tokens or 256, temperature=cfg.temperature or 0.0)
        started = time.perf_counter()
        completion = await self.model.generate(messages, options)
        latency = time.perf_counter() - started
        return CaseOutput(completion.text, latency, completion.usage.cost, prompt=self.version.ref)


class ModelTarget:
    """A model group answering each case's question (with an optional system message)."""

    rag = False

    def __init__(self, model: ChatModel, system: str | None, name: str) -> None:
        self.model = model
        self.system = system
        self.name = name

    async def run(self, case: Case) -> CaseOutput:
        assert case.question is not None
        messages = [Message("system", self.system)] if self.system else []
        messages.append(Message("user", case.question))
        started = time.perf_counter()
        completion = await self.model.generate(messages, GenerationOptions())
        return CaseOutput(completion.text, time.perf_counter() - started, completion.usage.cost)


def _prompt_of(suite: Suite, deps: EvalDeps, variant: str | None) -> PromptVersion:
    default = suite.target.prompt or deps.answer_prompt
    name, ref = parse_ref(default)
    if variant is not None:
        name, ref = parse_ref(variant) if "@" in variant else (name, variant)
    return deps.prompts.get(name, ref)


def build_target(
    suite: Suite, deps: EvalDeps, variant: str | None = None, principal: Principal = LOCAL_ADMIN
) -> Target:
    """The suite's target, or its ``variant`` (see the module docs); unknown refs raise NotFoundError."""
    spec = suite.target
    group = spec.model
    if variant is not None and (variant.startswith("model:") or spec.kind == "model"):
        group, variant = variant.removeprefix("model:"), None
    if spec.kind == "model":
        model = deps.chat_model_for(group)
        return ModelTarget(model, spec.system, f"model {group or model.name}")
    version = _prompt_of(suite, deps, variant)
    if spec.kind == "prompt":
        return PromptTarget(version, deps.chat_model_for(group or version.template.model.model_group))
    answerer = copy.copy(deps.answerer())  # same retriever and settings; this prompt version and model
    answerer.prompt_ref = version.ref
    if group is not None:
        answerer.model = deps.chat_model_for(group)
    return RagTarget(answerer, spec.collection, principal, f"rag {version.ref} on {answerer.model.name}")
