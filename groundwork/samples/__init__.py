"""The bundled sample corpus: a fictional company handbook and questions it answers."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).parent


def handbook_dir() -> Path:
    """Folder of the sample handbook (Markdown, HTML, PDF, DOCX and text files)."""
    return _HERE / "handbook"


def questions_file() -> Path:
    """YAML file of sample questions: ``answerable`` (with the answering document) and ``unanswerable``."""
    return _HERE / "handbook_questions.yaml"


def broken_dir() -> Path:
    """Files that must fail to ingest: a corrupt PDF and an unsupported format."""
    return _HERE / "broken"
