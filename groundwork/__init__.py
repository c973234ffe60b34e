"""Groundwork: a self-hosted GenAI platform. Grounded answers with citations over your documents."""

from groundwork.config import Settings
from groundwork.container import Container
from groundwork.errors import ErrorCategory, GroundworkError, Severity
from groundwork.rag.answer import Answer
from groundwork.types import Chunk, Citation, Document, Message, Principal

__all__ = [
    "Answer",
    "Chunk",
    "Citation",
    "Container",
    "Document",
    "ErrorCategory",
    "GroundworkError",
    "Message",
    "Principal",
    "Settings",
    "Severity",
]
__version__ = "0.1.0"
