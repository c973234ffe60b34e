"""Grounded answering with the fake models: verification, extractive fallback, 'do not say'."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from groundwork.container import Container
from groundwork.models.fake import FakeChatModel
from groundwork.rag.answer import NO_ANSWER
from groundwork.rag.grounding import best_support, content_words, is_refusal, numbers, split_sentences
from groundwork.rag.retrieval import reciprocal_rank_fusion


@pytest.fixture
def loaded(fake_container: Container, handbook: Path) -> Container:
    fake_container.ingestor.ingest_paths([handbook])
    return fake_container


def _model(c: Container) -> FakeChatModel:
    """The scripted fake behind the router's default group."""
    model = c.router.groups["fake"][0].model
    assert isinstance(model, FakeChatModel)
    return model


def test_rrf_rewards_agreement() -> None:
    fused = reciprocal_rank_fusion([([1, 2, 3], 1.0), ([3, 4, 1], 1.0)], k=60)
    assert [i for i, _ in fused][:2] == [1, 3]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 63)
    only_vectors = reciprocal_rank_fusion([([1, 2], 1.0), ([2, 1], 0.0)], k=60)
    assert [i for i, _ in only_vectors] == [1, 2]


def test_grounding_primitives() -> None:
    assert numbers("£1,200 by 31 March, 09:30") == {"1200", "31", "09:30"}
    assert "leave" in content_words("How many days of leave?") and "how" not in content_words("How")
    assert split_sentences("One. Two! Three?\nFour") == ["One.", "Two!", "Three?", "Four"]
    sources = ["Full-time employees receive 27 days of annual leave.", "Sick pay lasts 15 days."]
    good = best_support("Employees receive 27 days of annual leave.", sources)
    assert good is not None and good.source_index == 0 and good.supported(0.5)
    wrong_number = best_support("Employees receive 40 days of annual leave.", sources)
    assert wrong_number is not None and not wrong_number.supported(0.5)
    assert is_refusal("I don't know.") and is_refusal("The sources do not mention it")
    assert not is_refusal("You get 27 days.")


def test_names_and_fragments_are_checked() -> None:
    from groundwork.rag.grounding import is_claim, names

    source = ["Our Data Protection Officer is Tom Okafor. Anchor days are Tuesday and Thursday."]
    wrong_name = best_support("The company's Data Protection Officer is Priya Raman.", source)
    assert wrong_name is not None and not wrong_name.supported(0.5)
    right_name = best_support("The Data Protection Officer is Tom Okafor.", source)
    assert right_name is not None and right_name.supported(0.5)
    wrong_days = best_support("The office anchor days are Monday and Friday.", source)
    assert wrong_days is not None and not wrong_days.supported(0.5)
    assert names("Ask Tom on Tuesday.") == {"tom", "tuesday"}
    assert not is_claim("To declare an incident, follow these steps:")
    assert not is_claim("The answer is: 2025")
    assert is_claim("Anchor days are Tuesday and Thursday.")


def test_supported_model_answer_is_kept_and_cited(loaded: Container) -> None:
    _model(loaded).enqueue("Full-time employees receive 27 days of annual leave per calendar year.")
    tokens: list[str] = []
    answer = asyncio.run(
        loaded.answerer.ask("How many days of annual leave do full-time staff get?", on_token=tokens.append)
    )
    assert answer.mode == "generated"
    assert answer.text.endswith("[1]") and "27 days" in answer.text
    assert "".join(tokens).strip() == answer.draft
    cite = answer.citations[0]
    assert Path(cite.source).name == "leave-policy.md" and cite.heading_path[-1] == "Annual Leave"
    doc_text = Path(cite.source).read_text()
    assert "27 days" in cite.quote and cite.end > cite.start
    assert cite.title == "Leave Policy" and doc_text  # the span indexes the parsed text
    # the prompt numbered the sources and carried the question
    prompt = _model(loaded).calls[-1][-1].content
    assert "[1]" in prompt and "Question: How many days of annual leave" in prompt


def test_hallucinated_answer_falls_back_to_cited_extract(loaded: Container) -> None:
    _model(loaded).enqueue("Full-time staff get 40 days of annual leave and a free car.")
    answer = asyncio.run(loaded.answerer.ask("How many days of annual leave do full-time staff get?"))
    assert answer.mode == "extractive"
    assert "40" not in answer.text and "27 days" in answer.text
    assert answer.draft.startswith("Full-time staff get 40 days")
    assert {Path(c.source).name for c in answer.citations} == {"leave-policy.md"}
    assert all(c.quote in answer.text for c in answer.citations)


def test_refusal_with_strong_evidence_answers_extractively(loaded: Container) -> None:
    _model(loaded).enqueue("I don't know.")
    answer = asyncio.run(loaded.answerer.ask("What day of the month are salaries paid?"))
    assert answer.mode == "extractive"
    assert "25th" in answer.text
    assert Path(answer.citations[0].source).name == "compensation-and-payroll.pdf"


def test_unsupported_sentences_are_dropped_supported_kept(loaded: Container) -> None:
    _model(loaded).enqueue(
        "Full-time employees receive 27 days of annual leave per calendar year."
        " Staff also get a free pony every Friday."
    )
    answer = asyncio.run(loaded.answerer.ask("How many days of annual leave do full-time staff get?"))
    assert answer.mode == "generated" and "pony" not in answer.text and "27 days" in answer.text
    assert answer.unsupported == ("Staff also get a free pony every Friday.",)  # flagged, not silently lost
    assert answer.to_dict()["unsupported"] == ["Staff also get a free pony every Friday."]


def test_a_sentence_cut_by_max_tokens_is_dropped(loaded: Container) -> None:
    first = "Full-time employees receive 27 days of annual leave per calendar year."
    _model(loaded).enqueue(
        first + " Part-time employees receive a pro-rata allowance based on" + " their hours" * 40
    )
    answer = asyncio.run(loaded.answerer.ask("How many days of annual leave do full-time staff get?"))
    assert answer.mode == "generated" and answer.text == first + " [1]"


def test_off_topic_question_says_the_documents_do_not_say_without_calling_the_model(
    loaded: Container,
) -> None:
    model = _model(loaded)
    before = len(model.calls)
    answer = asyncio.run(loaded.answerer.ask("Who won the 2018 FIFA World Cup in Russia?"))
    assert answer.mode == "no_answer" and answer.text == NO_ANSWER and not answer.citations
    assert len(model.calls) == before


def test_answers_respect_the_collection(loaded: Container, handbook: Path) -> None:
    loaded.ingestor.ingest_paths([handbook / "beacon-product-faq.md"], collection="product")
    _model(loaded).enqueue("Full-time employees receive 27 days of annual leave per calendar year.")
    answer = asyncio.run(loaded.answerer.ask("How many days of annual leave?", collection="product"))
    assert all(Path(c.source).name == "beacon-product-faq.md" for c in answer.citations)
    assert "27 days" not in answer.text


def test_answer_json_shape(loaded: Container) -> None:
    answer = asyncio.run(loaded.answerer.ask("When is Forge Day this year?"))
    data = answer.to_dict()
    assert set(data) >= {"answer", "citations", "mode", "timings", "usage", "model"}
    assert data["timings"]["total"] > 0
    for c in data["citations"]:
        assert set(c) >= {"number", "document_id", "source", "title", "heading_path", "start", "end", "score"}


def test_citation_spans_open_the_source_at_the_supporting_text(loaded: Container) -> None:
    """The cited span of the parsed document contains the quoted or supporting sentence."""
    from groundwork.rag.loaders import load_file

    questions = [
        ("What day of the month are salaries paid?", "I don't know."),  # extractive, a PDF
        ("How many days of annual leave do full-time staff get?", "I don't know."),  # extractive, Markdown
        (
            "How many days of annual leave do full-time staff get?",
            "Full-time employees receive 27 days of annual leave per calendar year.",
        ),  # generated: the span is the supporting chunk
    ]
    for question, draft in questions:
        _model(loaded).enqueue(draft)
        answer = asyncio.run(loaded.answerer.ask(question))
        assert answer.citations
        for c in answer.citations:
            text = load_file(Path(c.source)).text
            assert c.quote and text[c.start : c.end].strip() == c.quote.strip()
        if answer.mode == "generated":
            span = load_file(Path(answer.citations[0].source)).text[
                answer.citations[0].start : answer.citations[0].end
            ]
            assert "27 days of annual leave" in span
