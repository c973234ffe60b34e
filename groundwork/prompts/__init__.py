"""Prompt templates and the prompt registry (versions, labels, history, diff, rollback)."""

from groundwork.prompts.registry import LATEST, PRODUCTION, PromptRegistry, Seed, parse_ref
from groundwork.prompts.store import LabelEvent, PromptStore, PromptVersion
from groundwork.prompts.template import RULES, ModelConfig, PromptTemplate, VariableSpec

__all__ = [
    "LATEST",
    "PRODUCTION",
    "RULES",
    "LabelEvent",
    "ModelConfig",
    "PromptRegistry",
    "PromptStore",
    "PromptTemplate",
    "PromptVersion",
    "Seed",
    "VariableSpec",
    "parse_ref",
]
