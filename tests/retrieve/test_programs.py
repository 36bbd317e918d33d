"""Retrieve, RAG and MultiHop: traces, rendering, passages in prompts, compiling, saving."""

from __future__ import annotations

import json
import re

import pytest
from _corpus import corpus, ids

import oobleck
from oobleck import ConfigError, Example, FakeLM, InputError, LMRequest, Predict
from oobleck.modules.multihop import NO_PASSAGES, MultiHop
from oobleck.modules.rag import RAG
from oobleck.retrieve import BM25Index, HashingEmbedder, Passage, Retrieve, VectorIndex
from oobleck.retrieve.module import Retrieve as RetrieveStep


@pytest.fixture(scope="module")
def index() -> BM25Index:
    return BM25Index(corpus(), show_progress=False)


class Counting:
    """A retriever that counts its searches (to prove dry runs never search)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls = 0
        self.queries: list[str] = []

    def search(self, queries, *, k):
        self.calls += 1
        self.queries.extend(queries)
        return self.inner.search(queries, k=k)

    def config(self):
        return {"type": "counting"}


def field(request: LMRequest, name: str) -> str:
    content = request.messages[-1].content
    m = re.search(rf"\[\[ ## {name} ## \]\]\n(.*?)(?=\n\n\[\[ ## |\n\nRespond with|\Z)", content, re.S)
    assert m, content
    return m.group(1)


# Two-hop questions over the tiny corpus: the query writer asks for the question's subject on
# hop 1, then for the entity the first passage names; the answerer reads the passages.
HOP2 = {"Ada Lovelace": "London", "Guido van Rossum": "The Hague", "Marie Curie": "Paris"}


def line_field(request: LMRequest, name: str) -> str:
    """A field of a ``Name: value`` prompt (the query writers' default format)."""
    content = request.messages[-1].content
    m = re.search(rf"^{name.capitalize()}: (.*?)(?=\n[A-Z][a-z]+: |\Z)", content, re.S | re.M)
    assert m, content
    return m.group(1)


def scripted(request: LMRequest) -> dict[str, str]:
    """A deterministic 'LM' for MultiHop: queries from the question/passages, answers from passages."""
    system = request.messages[0].content
    if "[[ ## query ## ]]" in system or "Answer with Query:" in system:
        read = field if "[[ ## query ## ]]" in system else line_field
        question = read(request, "question")
        context = read(request, "context")
        if context == NO_PASSAGES:
            return {"query": question.split(" of ")[-1].rstrip("?")}
        first_title = re.search(r"^\[1\] (.+)$", context, re.M)
        assert first_title, context
        return {"query": HOP2.get(first_title.group(1), first_title.group(1))}
    context = field(request, "context")
    titles = re.findall(r"^\[\d+\] (.+)$", context, re.M)
    return {"answer": titles[-1] if titles else "unknown"}


def test_retrieve_returns_passages_and_shows_in_traces(index):
    step = Retrieve(index, k=2)
    with oobleck.trace() as t:
        out = step(query="capital of Nepal")
    assert ids(out.passages)[0] == "nepal" and all(isinstance(p, Passage) for p in out.passages)
    (entry,) = t.entries
    assert entry.predictor is step and entry.inputs == {"query": "capital of Nepal"}
    assert entry.outputs == {"passages": out.passages} and entry.usage.calls == 0
    assert step.named_predictors() == []
    with pytest.raises(InputError):
        step(query=["a", "b"])
    assert [ids(r) for r in step.batch(["Kathmandu", "Seine"])] == [["nepal"], ["seine", "paris"]]


def test_retriever_comes_from_the_context_when_the_step_has_none(index):
    step = Retrieve(k=1)
    with pytest.raises(ConfigError, match="no retriever"):
        step(query="Nepal")
    with oobleck.context(retriever=index):
        assert ids(step(query="Kathmandu").passages) == ["nepal"]


def test_rag_shows_numbered_passages_with_titles(index):
    lm = FakeLM([{"answer": "Kathmandu"}])
    rag = RAG(index, k=2, lm=lm)
    out = rag(question="What is the capital of Nepal?")
    assert out.answer == "Kathmandu" and ids(out.passages)[0] == "nepal"
    context = field(lm.requests[0], "context")
    assert context.startswith("[1] Nepal\nNepal is a landlocked country")
    assert "\n\n[2] " in context and "{" not in context  # numbered blocks, not a JSON line
    with pytest.raises(InputError, match="expected inputs"):
        rag(query="x")


def test_rag_with_a_custom_signature_searches_the_named_input(index):
    lm = FakeLM([{"verdict": "true"}])
    rag = RAG(index, k=1, signature="context, claim, source -> verdict", query_field="claim", lm=lm)
    out = rag(claim="Everest is in the Himalayas", source="quiz")
    assert out.verdict == "true" and ids(out.passages) == ["everest"]
    with pytest.raises(ConfigError, match="context"):
        RAG(index, signature="question -> answer")


def test_multihop_trace_shows_each_hops_query_and_passages(index):
    lm = FakeLM(scripted)
    program = MultiHop(index, hops=3, k=1, lm=lm, query_with_question=False)
    with oobleck.trace() as t:
        out = program(question="Which city is home of Ada Lovelace?")
    kinds = [type(e.predictor).__name__ for e in t.entries]
    # the first search is the question itself (no LM call); each later hop writes its query
    assert kinds == ["Retrieve", "Predict", "Retrieve", "Predict", "Retrieve", "Predict"]
    writers = [e for e in t.entries if isinstance(e.predictor, Predict)][:2]
    searches = [e for e in t.entries if isinstance(e.predictor, RetrieveStep)]
    assert out.queries == [s.inputs["query"] for s in searches]
    assert out.queries[0] == "Which city is home of Ada Lovelace?"
    # both writers read "[1] Ada Lovelace" first and ask for London; the second search skips the
    # London passage found already and brings the next one
    assert out.queries[1:] == [e.outputs["query"] for e in writers] == ["London", "London"]
    assert writers[0].inputs["context"] == searches[0].outputs["passages"]  # hop 2 sees what hop 1 found
    assert ids(out.passages) == ["ada", "london", "thames"] == [p.id for s in searches for p in s.outputs["passages"]]
    names = [n for n, _ in program.named_predictors()]
    assert names == ["generate_query[0]", "generate_query[1]", "generate_answer"]
    assert program.hops == 3
    # the query writers answer `Query: ...` on one line, with a small token limit
    writer_request = lm.requests[0]
    assert writer_request.stop == ("\n",) and writer_request.max_tokens == 32
    assert writer_request.response_format is None


def test_multihop_can_write_every_query(index):
    program = MultiHop(index, hops=2, k=2, search_question=False, query_with_question=False, lm=FakeLM(scripted))
    with oobleck.trace() as t:
        out = program(question="Where was the author of the first algorithm born, in the city of Ada Lovelace?")
    kinds = [type(e.predictor).__name__ for e in t.entries]
    assert kinds == ["Predict", "Retrieve", "Predict", "Retrieve", "Predict"]
    assert out.queries == ["Ada Lovelace", "London"]
    assert t.entries[0].inputs["context"] == NO_PASSAGES
    seen = [p.id for e in t.entries if isinstance(e.predictor, RetrieveStep) for p in e.outputs["passages"]]
    hop1, hop2 = (e.outputs["passages"] for e in t.entries if isinstance(e.predictor, RetrieveStep))
    assert ids(out.passages) == seen and not set(ids(hop1)) & set(ids(hop2))  # each hop adds new passages


def test_a_written_query_is_searched_after_the_question(index):
    # a drifting query ("a person") alone finds nothing useful; after the question it keeps the
    # question's words, and the second hop still adds passages the first did not find
    question = "Which river flows through Paris?"
    spy = Counting(index)
    out = MultiHop(spy, hops=2, k=1, lm=FakeLM([{"query": "a person"}, {"answer": "x"}]))(question=question)
    assert out.queries == [question, f"{question} a person"] == spy.queries
    assert len(set(ids(out.passages))) == 2
    alone = MultiHop(index, hops=2, k=1, lm=FakeLM([{"query": "a person"}, {"answer": "x"}]), query_with_question=False)
    assert alone(question=question).queries == [question, "a person"]
    # the query echoing the question is not searched twice over
    echo = MultiHop(index, hops=2, k=1, lm=FakeLM([{"query": question}, {"answer": "x"}]))(question=question)
    assert echo.queries == [question, question]


def test_the_search_settings_are_saved_and_checked_on_load(index, tmp_path):
    path = tmp_path / "multihop.json"
    MultiHop(index, hops=2, k=1, query_with_question=False).save(path)
    assert oobleck.load(path, lm=FakeLM([])).program.query_with_question is False
    data = json.loads(path.read_text())
    del data["program"]["extra"]["query_with_question"]  # an artifact from before the setting
    path.write_text(json.dumps(data))
    assert oobleck.load(path, lm=FakeLM([])).program.query_with_question is False
    data["program"]["extra"]["query_with_question"] = "yes"
    path.write_text(json.dumps(data))
    with pytest.raises(oobleck.ArtifactError, match="query_with_question must be true or false"):
        oobleck.load(path, lm=FakeLM([]))


def test_a_later_hop_never_spends_its_k_on_passages_found_before(index):
    # hop 2's query is the question again (a blank query falls back to it): without skipping
    # what hop 1 found it would add nothing
    program = MultiHop(index, hops=2, k=1, lm=FakeLM([{"query": "  "}, {"answer": "x"}]))
    question = "Which river flows through Paris?"
    out = program(question=question)
    assert out.queries == [question] * 2
    assert ids(out.passages) == ids(index.search([question], k=2)[0])
    assert ids(Retrieve(index, k=1)(query=question, exclude={"seine"}).passages) == ids(out.passages)[1:]


@pytest.mark.parametrize(
    ("reply", "query"),
    [
        ("Query: Kathmandu is the capital of", "Kathmandu is the capital of"),  # cut at max_tokens
        ("Kathmandu capital", "Kathmandu capital"),  # no field name
        ("Kathmandu\nNepal is a country in Asia", "Kathmandu"),
    ],  # one line is one query
)
def test_a_query_writers_reply_is_read_even_when_cut_or_bare(index, reply, query):
    program = MultiHop(index, hops=2, k=1, lm=FakeLM([reply, {"answer": "Kathmandu"}]), query_with_question=False)
    out = program(question="What is the capital of Nepal?")
    assert out.queries[1] == query and out.answer == "Kathmandu"
    # the same cut-off reply in JSON does not parse: the run would fail
    cut = FakeLM(['{"query": "Kathmandu is the capital of', {"answer": "Kathmandu"}])
    with pytest.raises(oobleck.ParseError):
        MultiHop(index, hops=2, k=1, lm=cut, adapter=oobleck.JSONAdapter())(question="What is the capital of Nepal?")


def test_dry_runs_never_search():
    spy = Counting(BM25Index(corpus(), show_progress=False))
    program = MultiHop(spy, hops=2, k=3, lm=FakeLM([]))
    calls = program.render_calls(question="Who designed the Analytical Engine?")
    assert [c.predictor for c in calls] == ["generate_query[0]", "generate_answer"]
    assert spy.calls == 0
    answer_prompt = calls[-1].messages[-1].content
    assert "[1] {title 1}\n{passage 1 for: Who designed the Analytical Engine?}" in answer_prompt
    # hop 2's placeholders: the question, then the query the model will write
    assert "[4] {title 1}\n{passage 1 for: Who designed the Analytical Engine? {query}}" in answer_prompt
    rag = RAG(spy, k=2, lm=FakeLM([]))
    assert "{passage 2 for: Nepal?}" in rag.render_calls(question="Nepal?")[0].messages[-1].content
    assert spy.calls == 0
    live = RAG(Retrieve(spy).retriever, k=1, lm=FakeLM([]))
    live.retrieve.search_on_render = True  # asked for: a real search during the dry run
    assert "[1] Nepal" in live.render_calls(question="Kathmandu")[0].messages[-1].content
    assert spy.calls == 1


def test_multihop_rejects_bad_settings(index):
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ConfigError, match="hops"):
            MultiHop(index, hops=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="k must be"):
        MultiHop(index, k=0)
    with pytest.raises(ConfigError, match="query_field"):
        MultiHop(index, query_field="topic")
    with pytest.raises(ConfigError, match="query_max_tokens"):
        MultiHop(index, query_max_tokens=0)


def test_max_passages_caps_the_context(index):
    program = MultiHop(index, hops=2, k=3, max_passages=2, lm=FakeLM(scripted))
    out = program(question="city of Ada Lovelace?")
    assert len(out.passages) == 2


def test_passages_render_the_same_from_objects_and_from_saved_dicts():
    passages = [Passage(id="1", title="Paris", text="Capital of France.", score=0.5), Passage(id="2", text="No title.")]
    p = Predict("context, question -> answer")
    live = p.render(context=passages, question="q")
    saved = p.render(context=[x.model_dump() for x in passages], question="q")
    assert live == saved
    assert "[1] Paris\nCapital of France.\n\n[2]\nNo title." in live[-1].content


def test_vector_rag_end_to_end():
    index = VectorIndex(corpus(), embedder=HashingEmbedder(dim=256), show_progress=False)
    out = RAG(index, k=1, lm=FakeLM([{"answer": "Guido van Rossum"}]))(question="Who created the Python language?")
    assert ids(out.passages)[0] in {"python", "guido"}


def bootstrap_rows() -> list[Example]:
    return [
        Example(question="Which city is home of Ada Lovelace?", answer="London", titles=["Ada Lovelace", "London"]),
        Example(question="Which city is home of Marie Curie?", answer="Paris", titles=["Marie Curie", "Paris"]),
        Example(question="Which city is home of Guido van Rossum?", answer="The Hague", titles=["Guido van Rossum"]),
    ]


def recall_and_answer(example, prediction, trace=None) -> bool:
    """Passes a run only when the answer is right AND every gold title was retrieved (read from the trace)."""
    from oobleck.metrics import TitleRecall, exact_match

    assert trace is not None  # the optimizer hands over the run's trace
    searched = TitleRecall(gold_field="titles", all_found=True)(example, {}, trace)
    return bool(searched) and exact_match(example, prediction)


def compiled_multihop(index):
    from oobleck.optimize import BootstrapFewShot

    program = MultiHop(index, hops=2, k=1, lm=FakeLM(scripted))
    train = [r.with_inputs("question") for r in bootstrap_rows()]
    opt = BootstrapFewShot(recall_and_answer, max_bootstrapped_demos=2, max_labeled_demos=3)
    return program, opt.compile(program, trainset=train), train


def test_bootstrap_tunes_every_step_from_whole_traces_that_passed(index):
    program, compiled, train = compiled_multihop(index)
    demos = {name: p.demos for name, p in compiled.named_predictors()}
    assert set(demos) == {"generate_query[0]", "generate_answer"}
    # Ada and Curie pass (London, Paris found and answered); Guido's scripted second hop
    # searches "The Hague", which is in no passage: a wrong answer, fails the metric.
    assert [d["query"] for d in demos["generate_query[0]"]] == ["London", "Paris"]
    assert [d["answer"] for d in demos["generate_answer"][:2]] == ["London", "Paris"]
    # every demo of one run comes from the same trace: the query writer saw hop 1's passages
    assert [p.title for p in demos["generate_query[0]"][0]["context"]] == ["Ada Lovelace"]
    assert [p.title for p in demos["generate_answer"][0]["context"]] == ["Ada Lovelace", "London"]
    # labelled padding only where a row holds the step's outputs (answers, not queries)
    assert len(demos["generate_query[0]"]) == 2
    assert demos["generate_answer"][2]["answer"] == "The Hague"
    assert all(p.demos == [] for p in program.predictors())  # the input program is untouched
    assert compiled.retrieve.retriever is index


QUESTIONS = [
    "Which city is home of Ada Lovelace?",
    "Which city is home of Marie Curie?",
    "Which city is home of Nepal?",
]

FRESH = """
import json, sys
sys.path.insert(0, {tests!r})
import oobleck
from test_programs import scripted
lm = oobleck.FakeLM(scripted)
art = oobleck.load({path!r}, lm=lm, strict=True)
outs = []
for q in {questions!r}:
    out = art(question=q)
    outs.append({{"answer": out.answer, "queries": out.queries, "passages": [p.id for p in out.passages]}})
print(json.dumps({{"outs": outs, "prompts": [[m.content for m in r.messages] for r in lm.requests],
                  "class": type(art.program).__name__, "multihop_imported_by_user": "test_programs" in sys.modules}}))
"""


def run_fresh(path, questions=QUESTIONS) -> dict:
    import json
    import subprocess
    import sys
    from pathlib import Path

    code = FRESH.format(tests=str(Path(__file__).parent), path=str(path), questions=questions)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("which", ["bm25", "hybrid"])
def test_compiled_multihop_artifact_runs_the_same_in_a_fresh_process(which, index, tmp_path):
    import json

    from oobleck.retrieve import HybridRetriever

    retriever = index if which == "bm25" else HybridRetriever([index, VectorIndex(corpus(), show_progress=False)])
    _, compiled, _ = compiled_multihop(retriever)
    lm = FakeLM(scripted)
    compiled.set_lm(lm)
    path = tmp_path / "multihop.json"
    compiled.save(path)
    text = path.read_text()
    assert "Kathmandu" not in text  # corpus passages never seen in a demo stay in side files
    doc = json.loads(text)
    side = {f["name"] for f in doc["files"]}
    assert any(n.startswith("corpus-") for n in side) and all(len(f["sha256"]) == 64 for f in doc["files"])
    assert '"type": "bm25"' in json.dumps(doc["program"])
    expect = []
    for q in QUESTIONS:
        out = compiled(question=q)
        expect.append({"answer": out.answer, "queries": out.queries, "passages": ids(out.passages)})
    got = run_fresh(path)
    assert got["class"] == "MultiHop"
    assert got["outs"] == expect
    assert got["prompts"] == [[m.content for m in r.messages] for r in lm.requests]  # same prompts, demos included


def test_a_loaded_qdrant_program_waits_for_the_user_to_give_the_engine(tmp_path):
    from oobleck.retrieve import QdrantRetriever

    qdrant = QdrantRetriever.from_corpus(corpus(), "wiki", show_progress=False)
    rag = RAG(qdrant, k=1, lm=FakeLM([{"answer": "Kathmandu"}], cycle=True))
    rag.save(tmp_path / "rag.json")
    assert '"collection": "wiki"' in (tmp_path / "rag.json").read_text()
    with pytest.warns(UserWarning, match="never chooses a server"):
        art = oobleck.load(tmp_path / "rag.json", lm=FakeLM([{"answer": "Kathmandu"}], cycle=True))
    with pytest.raises(ConfigError, match="never chooses a server"):
        art(question="capital of Nepal")
    with oobleck.context(retriever=qdrant):
        assert ids(art(question="capital of Nepal").passages) == ["nepal"]


def test_a_saved_program_never_loads_an_embedder_model_named_by_the_file(tmp_path):
    import json

    rag = RAG(VectorIndex(corpus(), show_progress=False), k=1, lm=FakeLM([{"answer": "x"}], cycle=True))
    rag.save(tmp_path / "rag.json")
    doc = json.loads((tmp_path / "rag.json").read_text())
    blob = json.dumps(doc)
    blob = blob.replace('"type": "hashing"', '"type": "transformers", "model_path": "/tmp/evil-model"', 1)
    (tmp_path / "rag.json").write_text(blob)
    with pytest.warns(UserWarning, match="neither bundled with oobleck nor allowed"):
        art = oobleck.load(tmp_path / "rag.json")
    with pytest.raises(ConfigError, match="neither bundled with oobleck nor allowed"):
        art(question="capital of Nepal")
    # an artifact may name a model folder only when the user allows it
    blob = blob.replace('"/tmp/evil-model"', json.dumps(str(tmp_path / "model")))
    (tmp_path / "rag.json").write_text(blob)
    with pytest.warns(UserWarning, match="allow_models"):
        oobleck.load(tmp_path / "rag.json")
    allowed = oobleck.load(tmp_path / "rag.json", allow_models=[tmp_path / "model"])
    assert allowed.program.retrieve.retriever.embedder.model_path == str((tmp_path / "model").resolve())


def test_labelled_demos_go_only_to_the_steps_a_row_labels(index):
    from oobleck.optimize import LabeledFewShot

    rows = [r.with_inputs("question") for r in bootstrap_rows()]
    compiled = LabeledFewShot(k=2).compile(MultiHop(index, hops=2), trainset=rows)
    counts = {name: len(p.demos) for name, p in compiled.named_predictors()}
    assert counts == {"generate_query[0]": 0, "generate_answer": 2}


GOOD_QUERY = "Search for the city the passages name."
GOOD_ANSWER = "Answer with the title of the last passage."


def instruction_sensitive(request: LMRequest) -> dict[str, str]:
    """Writes the right query only under GOOD_QUERY; proposes per step from its current instruction."""
    system = request.messages[0].content
    if system.startswith("Read these rows"):
        return {"summary": "Questions about where people were born."}
    if system.startswith("You improve the instruction"):
        current = field(request, "current_instruction")
        return {"instruction": GOOD_QUERY if "search query" in current else GOOD_ANSWER}
    if "Answer with Query:" in system:
        context = line_field(request, "context")
        first = re.search(r"^\[1\] (.+)$", context, re.M)
        return {"query": HOP2[first.group(1)] if system.startswith(GOOD_QUERY) and first else "a person"}
    titles = re.findall(r"^\[\d+\] (.+)$", field(request, "context"), re.M)
    return {"answer": titles[-1] if GOOD_ANSWER in system and titles else "unknown"}


def found_and_answered(example, prediction, trace=None) -> float:
    """Half for retrieving the answer's passage, half for answering it."""
    from oobleck.metrics import exact_match

    found = example.answer in [p.title for p in prediction.passages]
    return 0.5 * found + 0.5 * bool(exact_match(example, prediction))


@pytest.mark.parametrize("optimizer", ["InstructionSearch", "ReflectiveEvolution"])
def test_instruction_optimizers_tune_every_step_of_a_multihop(index, optimizer):
    from oobleck.optimize import InstructionSearch, ReflectiveEvolution

    rows = [r.with_inputs("question") for r in bootstrap_rows()[:2]]
    train, val = rows * 2, rows * 2
    lm = FakeLM(instruction_sensitive)
    program = MultiHop(index, hops=2, k=1, lm=lm, query_with_question=False)
    if optimizer == "InstructionSearch":
        opt = InstructionSearch(found_and_answered, breadth=1, depth=1, n_demos=0)
    else:
        opt = ReflectiveEvolution(found_and_answered, iterations=4, minibatch_size=2)
    best = opt.compile(program, trainset=train, valset=val, seed=0)
    assert best.generate_query[0].predictors()[0].instructions == GOOD_QUERY
    assert best.generate_answer.predictors()[0].instructions == GOOD_ANSWER
    scores = best.provenance["scores"]
    assert scores["start_score"] == 0.0 and scores["best_score"] == 100.0
    # every predictor got candidates of its own: each proposal changed one step of its parent
    cands = {c["id"]: c for c in scores["candidates"]}
    start = scores["candidates"][0]["instructions"]
    assert set(start) == {"generate_query[0]", "generate_answer"}
    changed = [
        [n for n, text in c["instructions"].items() if text != cands[c["parent"]]["instructions"][n]]
        for c in scores["candidates"]
        if c["parent"] is not None
    ]
    assert ["generate_query[0]"] in changed and ["generate_answer"] in changed
    assert all(len(c) == 1 for c in changed)
    proposals = [r for r in lm.requests if r.messages[0].content.startswith("You improve the instruction")]
    assert {field(r, "current_instruction") for r in proposals} >= {
        start["generate_query[0]"],
        start["generate_answer"],
    }
    assert program.generate_query[0].predictors()[0].instructions != GOOD_QUERY  # the input program is untouched
