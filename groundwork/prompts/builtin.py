"""The prompts the platform itself uses, seeded into the registry on first start.

Change them through the registry (``groundwork prompts create``, then move the ``production`` label,
gated by an evaluation suite); the text here is only the first version.
"""

from __future__ import annotations

from groundwork.prompts.registry import Seed
from groundwork.prompts.template import PromptTemplate, VariableSpec

RAG_ANSWER = "rag.answer"
"""The grounded-answer prompt: variables ``sources`` (numbered chunks) and ``question``."""

EVAL_JUDGE = "evals.judge"
"""The LLM-as-judge prompt: variables ``rubric``, ``input``, ``output`` and ``expected``."""

RAG_ANSWER_TEMPLATE = PromptTemplate(
    kind="chat",
    messages=(
        (
            "system",
            "You answer questions about a company's documents. Use only the numbered sources. "
            "Answer in one or two short sentences and copy exact figures from the sources. "
            "If the sources do not answer the question, reply: I don't know.",
        ),
        ("user", "Sources:\n{{ sources }}\n\nQuestion: {{ question }}"),
    ),
    variables={
        "sources": VariableSpec(description="The retrieved chunks, numbered [1], [2], ..."),
        "question": VariableSpec(description="The user's question."),
    },
)

EVAL_JUDGE_TEMPLATE = PromptTemplate(
    kind="chat",
    messages=(
        (
            "system",
            "You grade an AI system's output against a rubric. Reply with one JSON object and nothing "
            'else: {"score": <number from 0 to 1>, "pass": <true or false>, "reason": "<one sentence>"}.',
        ),
        (
            "user",
            "Rubric:\n{{ rubric }}\n\nInput:\n{{ input }}\n\nExpected (may be empty):\n{{ expected }}\n\n"
            "Output to grade:\n{{ output }}",
        ),
    ),
    variables={
        "rubric": VariableSpec(rule="non_blank"),
        "input": VariableSpec(required=False, default=""),
        "expected": VariableSpec(required=False, default=""),
        "output": VariableSpec(required=False, default=""),
    },
)

BUILTIN_PROMPTS: tuple[Seed, ...] = (
    Seed(RAG_ANSWER, RAG_ANSWER_TEMPLATE),
    Seed(EVAL_JUDGE, EVAL_JUDGE_TEMPLATE),
)
"""Seeded by the container when the registry opens (only names not yet in the registry)."""
