"""PassageMatch and TitleRecall read what a passage says, not its repr or a missing key."""

from __future__ import annotations

import pytest

from oobleck import Example, Prediction
from oobleck.metrics import PassageMatch, TitleRecall
from oobleck.retrieve import Passage

PASSAGES = [Passage(id="3", title="Lyon", text="Lyon is big.", score=0.5)]


@pytest.mark.parametrize("answer", ["3", "score", "05", "text", "id"])
def test_passage_match_does_not_match_a_passages_id_score_or_field_names(answer: str) -> None:
    metric = PassageMatch(field="answer", passages_field="passages")
    assert metric(Example(answer=answer), Prediction(passages=PASSAGES)) is False


@pytest.mark.parametrize("answer", ["Lyon", "big", "lyon is big"])
def test_passage_match_still_finds_the_answer_in_a_passages_title_or_text(answer: str) -> None:
    metric = PassageMatch(field="answer", passages_field="passages")
    assert metric(Example(answer=answer), Prediction(passages=PASSAGES)) is True
    as_data = [p.model_dump() for p in PASSAGES]  # passages read back from a saved artifact
    assert metric(Example(answer=answer), Prediction(passages=as_data)) is True


def test_passage_match_on_plain_strings_is_unchanged() -> None:
    metric = PassageMatch(field="answer")
    assert metric(Example(answer="Paris"), Prediction(context=["Lyon is big.", "Paris is the capital."])) is True
    assert metric(Example(answer="Rome"), Prediction(context="Paris is the capital.")) is False


def test_title_recall_reads_a_passage_mapping_without_a_title_as_untitled() -> None:
    metric = TitleRecall(gold_field="titles")
    prediction = Prediction(passages=[{"text": "no title here"}, {"title": "Paris", "text": "..."}])
    assert metric(Example(titles=["Paris", "Seine"]), prediction) == 0.5
