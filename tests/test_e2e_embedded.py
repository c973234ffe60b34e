"""End to end on the embedded defaults: MiniLM embeddings and SmolLM2-135M in process, offline."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
import yaml

from groundwork.container import Container
from groundwork.models.embedded import MiniLMEmbedder, SmolLMChatModel, find_smollm_gguf
from groundwork.rag.answer import NO_ANSWER
from groundwork.samples import questions_file

pytestmark = pytest.mark.slow

QUESTIONS = yaml.safe_load(questions_file().read_text())


def test_models_come_from_packages_and_run_offline(embedded_container: Container) -> None:
    assert find_smollm_gguf().name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert MiniLMEmbedder.model_path().is_dir()
    vectors = embedded_container.embedder.embed(["annual leave", "holiday allowance", "incident severity"])
    assert vectors.shape == (3, 384)
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2])
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # set by the code path itself, not by the tests


def test_batched_embeddings_keep_the_input_order(embedded_container: Container) -> None:
    """Batches are sorted by length inside embed(); the rows must come back in the caller's order."""
    texts = ["a much longer sentence about annual leave, carry-over and notice periods " * 3, "pay day", "x"]
    together = embedded_container.embedder.embed(texts)
    for i, text in enumerate(texts):
        alone = embedded_container.embedder.embed([text])[0]
        assert float(together[i] @ alone) > 0.999


def test_retrieval_hit_rate_on_the_handbook(embedded_container: Container) -> None:
    hits = 0
    for q in QUESTIONS["answerable"]:
        chunks = embedded_container.retriever.retrieve(q["question"], top_k=3).chunks
        hits += q["document"] in {Path(sc.chunk.source).name for sc in chunks}
    assert hits / len(QUESTIONS["answerable"]) >= 0.95


@pytest.mark.parametrize(
    ("question", "document", "fact"),
    [
        ("How many days of annual leave do full-time staff get?", "leave-policy.md", "27 days"),
        ("What day of the month do we get paid?", "compensation-and-payroll.pdf", "25th"),
        ("How much is my yearly training budget?", "learning-and-development-budget.docx", "1,200"),
    ],
)
def test_grounded_answers_cite_the_right_document(
    embedded_container: Container, question: str, document: str, fact: str
) -> None:
    tokens: list[str] = []
    answer = asyncio.run(embedded_container.answerer.ask(question, on_token=tokens.append))
    assert tokens, "the embedded model streamed no tokens"
    assert answer.usage.completion_tokens > 0 and answer.timings["time_to_first_token"] > 0
    assert answer.mode in ("generated", "extractive")
    assert Path(answer.citations[0].source).name == document
    assert fact in answer.text
    assert isinstance(embedded_container.router.groups["local"][0].model, SmolLMChatModel)


@pytest.mark.parametrize(
    "question",
    [
        "What is the capital of Australia?",
        "Who won the 2018 FIFA World Cup?",
        "How do I configure Kubernetes autoscaling?",
    ],
)
def test_questions_the_handbook_does_not_answer(embedded_container: Container, question: str) -> None:
    answer = asyncio.run(embedded_container.answerer.ask(question))
    assert answer.mode == "no_answer" and answer.text == NO_ANSWER and answer.citations == ()


def test_the_model_is_loaded_once(embedded_container: Container) -> None:
    model = embedded_container.router.groups["local"][0].model
    assert isinstance(model, SmolLMChatModel)
    model.warm_up()
    first = model._model
    model.warm_up()
    assert model._model is first
    assert (model.cache_dir / "model.safetensors").is_file()  # converted once, reused next start


def test_a_caller_that_goes_away_stops_the_generation(embedded_container: Container) -> None:
    """A timed-out or disconnected caller must not leave torch running in a thread (SIGABRT at exit)."""
    model = embedded_container.router.groups["local"][0].model
    assert isinstance(model, SmolLMChatModel)
    from groundwork.types import GenerationOptions, Message

    async def first_piece_then_leave() -> None:
        stream = model.stream(
            [Message("user", "Write a long story about a lighthouse.")], GenerationOptions(max_tokens=400)
        )
        async for chunk in stream:
            if chunk.delta:
                break
        await stream.aclose()  # type: ignore[attr-defined]

    asyncio.run(first_piece_then_leave())
    import threading
    import time

    deadline = time.monotonic() + 20
    while any(t.name == "smollm-generate" and t.is_alive() for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the generation thread kept running after its caller left"
        time.sleep(0.1)
    assert not model._workers
