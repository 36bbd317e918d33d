"""A MultiHop compiled on the real SmolLM2 runs the same after loading in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from _corpus import corpus

import oobleck
from oobleck import Example
from oobleck.metrics import f1
from oobleck.modules.multihop import MultiHop
from oobleck.optimize import BootstrapFewShot
from oobleck.retrieve import BM25Index

QUESTION = "Which river flows through the city where Ada Lovelace was born?"

FRESH = """
import json, oobleck
lm = oobleck.LocalLM(temperature=0.0, max_tokens=96, n_parallel=4)
art = oobleck.load({path!r}, lm=lm, strict=True)
out = art(question={question!r})
print(json.dumps({{"answer": out.answer, "queries": out.queries, "passages": [p.id for p in out.passages],
                  "demos": {{n: len(p.demos) for n, p in art.predictors.items()}}}}))
lm.close()
"""


@pytest.mark.slow
def test_compiled_multihop_on_smollm2_gives_the_same_outputs_in_a_fresh_process(local_lm, tmp_path):
    # The defaults: the first search is the question, one query writer (``Query: ...`` lines),
    # the answer step in the backend's default format.
    program = MultiHop(BM25Index(corpus(), show_progress=False), hops=2, k=1, lm=local_lm, max_retries=1)
    train = [
        Example(question=q, answer=a).with_inputs("question")
        for q, a in [
            ("Where did Marie Curie do her research?", "Paris"),
            ("Who designed the Analytical Engine?", "Charles Babbage"),
            ("What is the capital of Nepal?", "Kathmandu"),
        ]
    ]
    # Demos only from runs whose answer was right: every step gets the demo its own call produced.
    compiled = BootstrapFewShot(
        lambda ex, pred, trace: f1(ex, pred) >= 0.5, max_bootstrapped_demos=1, max_labeled_demos=1, max_errors=None
    ).compile(program, trainset=train)
    demos = {n: len(p.demos) for n, p in compiled.named_predictors()}
    assert demos == {"generate_query[0]": 1, "generate_answer": 1}
    (query_demo,) = compiled.generate_query[0].demos
    (answer_demo,) = compiled.generate_answer.demos
    # both come from the same passing run: the writer's query was searched and the answer read its result
    assert query_demo["question"] == answer_demo["question"] and query_demo["query"].strip()
    gold = next(ex for ex in train if ex.question == answer_demo["question"])
    assert f1(gold, oobleck.Prediction(answer=answer_demo["answer"])) >= 0.5
    assert [p.id for p in query_demo["context"]] == [p.id for p in answer_demo["context"]][:1]
    path = tmp_path / "multihop.json"
    compiled.save(path)
    # The run to compare with uses a new model instance, as the fresh process does. llama.cpp
    # keeps each slot's last prompt and reuses a matching prefix; a prompt read partly from that
    # cache can decode to another greedy answer than the same prompt read whole, and the
    # session's model has served every earlier test (seen in the full suite, never alone).
    fresh_lm = oobleck.LocalLM(temperature=0.0, max_tokens=96, n_parallel=4)
    try:
        with oobleck.trace() as t:
            expect = compiled.set_lm(fresh_lm)(question=QUESTION)
    finally:
        fresh_lm.close()
    assert [type(e.predictor).__name__ for e in t.entries] == ["Retrieve", "Predict", "Retrieve", "Predict"]
    code = FRESH.format(path=str(path), question=QUESTION)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["demos"] == demos
    assert got["queries"] == expect.queries
    assert got["passages"] == [p.id for p in expect.passages]
    assert got["answer"] == expect.answer
