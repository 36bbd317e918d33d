"""The grounded proposer: what reaches its prompt, cleaning, de-duplication, the history."""

from __future__ import annotations

import random

from _opt_helpers import field_of, sentiment_rows

from oobleck import Example, FakeLM, InputField, LMRequest, OutputField, Predict, Signature
from oobleck.metrics import exact_match
from oobleck.optimize._proposer import (
    TIPS,
    InstructionProposer,
    clean_instruction,
    echoes_proposer,
    grounded_variants,
    is_new,
)
from oobleck.optimize.instruction_search import InstructionSearch


class Review(Signature):
    """Classify the sentiment of a movie review."""

    sentence: str = InputField(desc="one sentence from a review")
    label: str = OutputField(desc="positive or negative")


def kind(request: LMRequest) -> str:
    system = request.messages[0].content
    if system.startswith("Read these rows"):
        return "summary"
    if system.startswith("You improve the instruction"):
        return "propose" if "[[ ## tried ## ]]" in request.messages[-1].content else "reflect"
    return "task"


def scripted(proposals: list[str]) -> FakeLM:
    """Summary, then the given proposals in turn; the task always answers 'positive'."""
    queue = list(proposals)

    def answer(request: LMRequest) -> dict[str, str]:
        k = kind(request)
        if k == "summary":
            return {"summary": "Short movie-review sentences labelled positive or negative."}
        if k in ("propose", "reflect"):
            return {"instruction": queue.pop(0) if queue else "Say positive."}
        return {"label": "positive"}

    return FakeLM(answer)


def test_each_grounding_part_appears_in_the_prompt() -> None:
    lm = scripted(["Decide whether the review is positive or negative."])
    program = Predict(Review, lm=lm)
    demos = [Example(sentence="A delightful film.", label="positive")]
    proposer = InstructionProposer()
    summary = proposer.summarize(program, sentiment_rows(), seed=0)
    assert summary == "Short movie-review sentences labelled positive or negative."
    summary_prompt = lm.requests[0].messages[-1].content
    assert sum(r.sentence in summary_prompt for r in sentiment_rows()) == 8  # summary_rows of them

    text, info = proposer.propose(
        program,
        "self",
        summary=summary,
        demos=demos,
        history=[("Label it.", 40.0), ("Say if the review is positive.", 75.0), ("never scored", None)],
        rng=random.Random(0),
        sample=0,
    )
    assert text == "Decide whether the review is positive or negative."
    prompt = lm.requests[-1].messages[-1].content
    assert field_of(lm.requests[-1], "dataset") == summary
    program_part = prompt.split("[[ ## program ## ]]")[1]
    assert "sentence -> label" in program_part and "one sentence from a review" in program_part
    assert "<- the step to instruct" in program_part
    assert "A delightful film." in prompt and "label: positive" in prompt
    assert field_of(lm.requests[-1], "current_instruction") == "Classify the sentiment of a movie review."
    assert info["tip"] in TIPS and info["tip"] in prompt
    tried = prompt.split("[[ ## tried ## ]]")[1]
    # worst first, best last; unscored ones are left out
    assert tried.index("40.0: Label it.") < tried.index("75.0: Say if the review is positive.")
    assert "never scored" not in tried


def test_cleaning_strips_markers_labels_quotes_and_field_lists() -> None:
    raw = '[[ ## instruction ## ]]\nNew instruction: "Read the review.\nInput fields:\n- sentence (str): text\nAnswer positive or negative."'
    assert clean_instruction(raw) == "Read the review. Answer positive or negative."
    # an echo of the history's "score: instruction" lines keeps only the instruction
    assert clean_instruction("Tried: 8.3: Classify the question.") == "Classify the question."
    assert clean_instruction("Use 3 words: yes or no.") == "Use 3 words: yes or no."
    assert clean_instruction("   ") == "" and clean_instruction("[[ ## instruction ## ]]") == ""
    long = "Classify the review carefully. " * 30
    cut = clean_instruction(long, max_chars=100)
    assert len(cut) <= 100 and cut.endswith(".")
    assert not is_new("classify the review!", ["Classify the review."])
    assert is_new("Classify the sentence.", ["Classify the review."])
    assert not is_new("", [])


def test_the_history_reaches_the_next_proposal() -> None:
    rows = [r.copy(sentence=f"{i}: {r.sentence}") for i, r in enumerate(sentiment_rows())]
    lm = scripted(["First idea about reviews.", "Second idea about reviews."])
    opt = InstructionSearch(exact_match, breadth=2, depth=1, n_demos=0, racing=False)
    best = opt.compile(Predict(Review, lm=lm), trainset=rows[:6], valset=rows[6:])
    proposals = [r for r in lm.requests if kind(r) == "propose"]
    assert len(proposals) == 2
    first_score = next(
        c["score"]
        for c in best.provenance["scores"]["candidates"]
        if c["instructions"]["self"] == "First idea about reviews."
    )
    assert "First idea about reviews." not in proposals[0].messages[-1].content
    assert f"{first_score:.1f}: First idea about reviews." in field_of(proposals[1], "tried")
    # the starting instruction is in the history from the start
    assert "Classify the sentiment of a movie review." in field_of(proposals[0], "tried")


def test_a_duplicate_proposal_is_not_scored_again() -> None:
    rows = sentiment_rows()
    lm = scripted(["Same idea.", "same idea!"])
    best = InstructionSearch(exact_match, breadth=2, depth=1, n_demos=0, grounded_fallback=False).compile(
        Predict(Review, lm=lm), trainset=rows[:6], valset=rows[6:]
    )
    kinds = [c["kind"] for c in best.provenance["scores"]["candidates"]]
    assert kinds == ["start", "proposal"]
    rejected = [p for p in best.provenance["notes"]["proposals"].values() if p.get("rejected")]
    assert [p["rejected"] for p in rejected] == ["duplicate"]


def test_an_unusable_proposal_is_replaced_by_a_variant_grounded_in_the_signature() -> None:
    rows = sentiment_rows()
    echo = "You improve the instruction to the previous one, step by step."
    lm = scripted([echo, "Same idea.", "same idea!"])
    best = InstructionSearch(exact_match, breadth=3, depth=1, n_demos=0, racing=False).compile(
        Predict(Review, lm=lm), trainset=rows[:6], valset=rows[6:]
    )
    proposals = best.provenance["notes"]["proposals"]
    by_source = sorted((p.get("rejected", ""), p["source"]) for p in proposals.values())
    assert by_source == [("", "lm"), ("duplicate", "template"), ("echo", "template")]
    tried = [c["instructions"]["self"] for c in best.provenance["scores"]["candidates"]]
    assert echo not in tried and "Same idea." in tried
    # the two template variants: the output field's description, a restatement from the fields
    assert "Classify the sentiment of a movie review. Read the sentence carefully, then give the label." in tried
    assert len(set(tried)) == len(tried) == 4


def test_echoes_of_the_proposer_prompt_are_recognised() -> None:
    assert echoes_proposer("The new instruction requires you to evaluate the output of the step.")
    assert echoes_proposer(
        "Your instructions are just too long. A shorter version of your instructions can be provided."
    )
    assert not echoes_proposer("Decide whether the sentence praises or criticises the film.")
    # words the task itself uses are not held against it
    assert not echoes_proposer("Solve the problem step by step, then give the final number.")
    assert echoes_proposer("Improve each step of the previous answer.")
    assert not echoes_proposer(
        "Improve each step of the previous answer.", "Improve the previous answer, step by step."
    )


def test_grounded_variants_name_the_choices_and_the_fields() -> None:
    sig = Signature("review, title -> label: Literal['good', 'bad']", instructions="Rate the review")
    variants = grounded_variants(sig)
    assert variants[0] == "Rate the review. Answer with one of: good, bad."
    assert "Read the review and title carefully, then give the label." in variants[1]
    assert len(set(variants)) == len(variants) and all(len(v) < 400 for v in variants)
    assert all(not echoes_proposer(v) for v in variants)
