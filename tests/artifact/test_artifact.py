"""Artifacts: save → load round trips, loading without the class, re-attaching, export, safety."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import warnings
from pathlib import Path
from typing import Literal

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import oobleck
from oobleck import (
    ArtifactError,
    ChainOfThought,
    FakeLM,
    JSONAdapter,
    Module,
    Predict,
    context,
)
from oobleck.artifact import (
    Artifact,
    ArtifactWarning,
    FrozenModule,
    SideFiles,
    export_messages,
    export_request,
    load,
    loads,
    save,
)

FIXTURES = Path(__file__).parents[1] / "fixtures"

from qa_program import TwoStep
from scripted_lms import echo_lm


class Answer(pydantic.BaseModel):
    value: int
    unit: str = "none"


def optimized_predict() -> Predict:
    p = Predict(
        "question -> answer",
        demos=[{"question": "Capital of France?", "answer": "Paris"}],
        temperature=0.0,
        max_tokens=64,
        max_retries=2,
    )
    p.signature = p.signature.with_instructions("Answer in one word.")
    return p


# ---------------------------------------------------------------- round trips


def test_predict_round_trip_same_render_same_outputs(tmp_path):
    original = optimized_predict()
    original.save(tmp_path / "qa.json")
    loaded = load(tmp_path / "qa.json")
    assert isinstance(loaded, Artifact) and isinstance(loaded.program, Predict) and loaded.runnable
    assert loaded.render(question="2+2?") == original.render(question="2+2?")
    assert loaded.templates["self"] == original.template()
    lm1, lm2 = echo_lm(), echo_lm()
    with context(lm=lm1):
        want = original(question="2+2?")
    with context(lm=lm2):
        got = loaded(question="2+2?")
    assert dict(got) == dict(want)
    assert lm1.requests == lm2.requests  # same messages, temperature, max_tokens, stop


def test_loaded_artifact_uses_the_lm_given_to_load(tmp_path):
    optimized_predict().save(tmp_path / "qa.json")
    art = load(tmp_path / "qa.json", lm=FakeLM([{"answer": "4"}]))
    assert art(question="2+2?").answer == "4"


def test_chain_of_thought_is_rebuilt_without_any_class(tmp_path):
    cot = ChainOfThought(
        "question -> answer: int", demos=[{"question": "1+1", "reasoning": "one and one", "answer": 2}]
    )
    cot.save(tmp_path / "cot.json")
    art = load(tmp_path / "cot.json", lm=FakeLM([{"reasoning": "two twos", "answer": 4}]))
    assert type(art.program) is ChainOfThought
    assert list(art.predictors) == ["predict"]
    assert art.render(question="2+2") == cot.render(question="2+2")
    assert art(question="2+2").answer == 4


def test_typed_outputs_rebuilt_from_json_schema(tmp_path):
    sig = oobleck.Signature("text -> answer: Answer, label: Literal['pos', 'neg']", types={"Answer": Answer})
    p = Predict(
        sig, adapter=JSONAdapter(strict=True), demos=[{"text": "hi", "answer": Answer(value=1), "label": "pos"}]
    )
    p.save(tmp_path / "typed.json")
    art = load(tmp_path / "typed.json")
    assert art.predictors["self"].adapter.strict is True
    assert art.render(text="yo") == p.render(text="yo")
    with context(lm=echo_lm()):
        got, want = art(text="yo"), p(text="yo")
    assert got.answer.model_dump() == want.answer.model_dump() and got.label == want.label == "pos"
    assert art.predictors["self"].signature.output_fields["label"].type == Literal["pos", "neg"]


def test_user_program_without_its_class(tmp_path):
    TwoStep().save(tmp_path / "two.json")
    art = load(tmp_path / "two.json", lm=echo_lm())
    assert isinstance(art.program, FrozenModule) and not art.runnable
    assert art.class_path == "qa_program.TwoStep"
    assert list(art.predictors) == ["generate_answer.predict", "check"]
    assert art.predictors["check"](question="q", answer="a").ok is True
    with pytest.raises(ArtifactError, match=r"program=TwoStep\(\)"):
        art(question="q")


def test_user_program_with_its_class_reattaches_by_name(tmp_path):
    trained = TwoStep()
    trained.check.demos = [{"question": "q0", "answer": "a0", "ok": False}]
    trained.generate_answer.predict.signature = trained.generate_answer.predict.signature.with_instructions("Be brief.")
    trained.provenance = {"optimizer": "Test", "seed": 3}
    trained.save(tmp_path / "two.json")

    fresh = TwoStep()
    art = load(tmp_path / "two.json", program=fresh, lm=echo_lm())
    assert art.program is fresh and art.runnable
    assert [dict(d) for d in fresh.check.demos] == trained.check.demos
    assert fresh.generate_answer.predict.instructions == "Be brief."
    assert fresh.provenance == {"optimizer": "Test", "seed": 3}
    assert art(question="q").answer  # the user's own forward runs
    assert [dict(d) for d in TwoStep().load(tmp_path / "two.json").check.demos] == trained.check.demos


def test_reattach_refuses_mismatches_and_changes_nothing(tmp_path):
    TwoStep().save(tmp_path / "two.json")

    class Renamed(Module):
        def __init__(self):
            self.generate_answer = ChainOfThought("question -> answer")
            self.verify = Predict("question, answer -> ok: bool")

    with pytest.raises(ArtifactError, match=r"missing in the program: \['check'\]"):
        load(tmp_path / "two.json", program=Renamed())

    class Retyped(TwoStep):
        def __init__(self):
            super().__init__()
            self.check = Predict("question, answer -> ok: int", demos=[{"question": "x", "answer": "y", "ok": 1}])

    prog = Retyped()
    before = prog.generate_answer.predict.signature
    with pytest.raises(ArtifactError, match="ok: bool"):
        load(tmp_path / "two.json", program=prog)
    assert prog.generate_answer.predict.signature is before  # nothing half-applied
    with pytest.raises(ArtifactError, match=r"program=TwoStep\(\)"):
        load(tmp_path / "two.json", program=TwoStep)  # a class, not an instance


def test_same_program_saves_byte_identical(tmp_path):
    prog = TwoStep()
    prog.provenance = {"scores": {"dev": 81.5}, "tags": {"b", "a", "c"}, "seed": 0}
    save(prog, tmp_path / "a.json")
    save(prog.copy(), tmp_path / "b.json")
    load(tmp_path / "a.json", program=TwoStep()).save(tmp_path / "c.json")
    a = (tmp_path / "a.json").read_bytes()
    assert a == (tmp_path / "b.json").read_bytes() == (tmp_path / "c.json").read_bytes()
    assert b'"tags": [\n      "a",\n      "b",\n      "c"\n    ]' in a  # sets are sorted
    doc = json.loads(a)
    assert list(doc) == sorted(doc) and doc["schema_version"] == 1 and doc["oobleck_version"] == oobleck.__version__


def test_provenance_metadata_and_lm_identity_are_recorded(tmp_path):
    p = optimized_predict()
    p.lm = FakeLM(name="tiny")
    p.provenance = {"optimizer": "BootstrapFewShot", "train_sha256": "ab" * 32, "lm_calls": 12}
    save(p, tmp_path / "qa.json", metadata={"commit": "abc123"})
    art = load(tmp_path / "qa.json")
    assert art.provenance["optimizer"] == "BootstrapFewShot" and art.metadata == {"commit": "abc123"}
    assert art.lm_identities["self"] == {"backend": "fake", "model": "tiny"}
    assert art.predictors["self"].lm is None  # LMs are never restored from a file
    assert art.predictors["self"].config == {"temperature": 0.0, "max_tokens": 64}
    assert art.predictors["self"].max_retries == 2


def test_export_messages_and_a_plain_openai_call(tmp_path):
    openai = pytest.importorskip("openai")
    httpx = pytest.importorskip("httpx")
    p = optimized_predict()
    p.save(tmp_path / "qa.json")
    art = load(tmp_path / "qa.json")
    msgs = export_messages(art, question="2+2?")
    assert msgs == [m.model_dump() for m in p.render(question="2+2?")]
    assert export_messages(tmp_path / "qa.json", {"question": "2+2?"}) == msgs == export_messages(p, question="2+2?")

    seen = []

    def handler(request):
        seen.append(json.loads(request.content))
        body = {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "[[ ## answer ## ]]\n4"},
                }
            ],
        }
        return httpx.Response(200, json=body)

    client = openai.OpenAI(
        api_key="unused", base_url="http://test/v1", http_client=httpx.Client(transport=httpx.MockTransport(handler))
    )
    reply = client.chat.completions.create(**export_request(art, question="2+2?", model="m"))
    assert art.parse(reply.choices[0].message.content).answer == "4"
    assert seen[0]["messages"] == msgs
    assert (
        seen[0]["temperature"] == 0.0 and seen[0]["max_tokens"] == 64 and seen[0]["stop"] == ["[[ ## completed ## ]]"]
    )


def test_export_needs_a_predictor_name_for_frozen_multi_step_programs(tmp_path):
    TwoStep().save(tmp_path / "two.json")
    art = load(tmp_path / "two.json")
    with pytest.raises(ArtifactError, match="pass predictor=NAME"):
        export_messages(art, question="q")
    msgs = export_messages(art, predictor="check", question="q", answer="a")
    assert msgs[-1]["content"].startswith("[[ ## question ## ]]\nq")


def test_loaded_artifact_is_thread_safe_and_async(tmp_path):
    optimized_predict().save(tmp_path / "qa.json")
    art = load(tmp_path / "qa.json", lm=echo_lm())
    results: dict[int, str] = {}

    def work(i):
        results[i] = art(question=f"question number {i:03d}").answer

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(f"{i:03d}" in results[i] for i in range(16))
    got = asyncio.run(art.acall(question="async one"))
    assert "sync one" in got.answer


# ---------------------------------------------------------------- extension point and side files


class Vote(Module):
    """A user module with extra state: weights stored as a numpy side file."""

    def __init__(self, n: int = 2) -> None:
        import numpy as np

        self.voters = [Predict("question -> answer") for _ in range(n)]
        self.weights = np.linspace(0.5, 1.0, n)
        self.label = "vote"

    def forward(self, question):
        answers = [v(question=question) for v in self.voters]
        return answers[int(self.weights.argmax())]

    def dump_extra(self, files: SideFiles) -> dict:
        return {"weights": files.write_array("weights.npy", self.weights), "label": self.label}

    def load_extra(self, extra: dict, files: SideFiles) -> None:
        self.weights = files.read_array(extra["weights"])
        self.label = extra["label"]


def test_user_module_passed_to_load_round_trips_with_side_files(tmp_path):
    vote = Vote(3)
    vote.voters[2].demos = [{"question": "q", "answer": "a"}]
    vote.save(tmp_path / "vote.json")
    assert (tmp_path / "vote.weights.npy").exists()
    art = load(tmp_path / "vote.json", module_types={"Vote": Vote})
    assert type(art.program) is Vote and art.program.label == "vote"
    assert art.program.weights.tolist() == vote.weights.tolist()
    assert list(art.predictors) == ["voters[0]", "voters[1]", "voters[2]"]
    with context(lm=echo_lm()):
        assert art(question="hello").answer == "hello"
    save(art.program, tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == (tmp_path / "vote.json").read_text().replace(
        "vote.weights", "again.weights"
    )

    with pytest.raises(ArtifactError, match="side file"):
        loads((tmp_path / "vote.json").read_text())  # side files need a directory
    (tmp_path / "vote.weights.npy").write_bytes(b"tampered")
    with pytest.raises(ArtifactError, match="does not match the artifact"):
        load(tmp_path / "vote.json")
    (tmp_path / "vote.weights.npy").unlink()
    with pytest.raises(ArtifactError, match="needs its side file"):
        load(tmp_path / "vote.json")


# ---------------------------------------------------------------- bad files


def _doc(tmp_path) -> dict:
    TwoStep().save(tmp_path / "good.json")
    return json.loads((tmp_path / "good.json").read_text())


def _write(tmp_path, data, name="bad.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON list"),
        ('{"format": "something else"}', "not an oobleck artifact"),
        ("[" * 100_000, "too deeply|nests JSON"),
        ('{"format": "oobleck.artifact", "format": "x"}', "repeats the key"),
        ('{"a": NaN}', "not JSON"),
    ],
)
def test_garbage_files_raise_artifact_error(tmp_path, text, match):
    with pytest.raises(ArtifactError, match=match):
        load(_write(tmp_path, text))


def test_truncated_binary_and_missing_files(tmp_path):
    text = json.dumps(_doc(tmp_path))
    with pytest.raises(ArtifactError, match="truncated"):
        load(_write(tmp_path, text[: len(text) // 2]))
    (tmp_path / "bin.json").write_bytes(b"\x80\x81\xfe\xff")
    with pytest.raises(ArtifactError, match="not UTF-8"):
        load(tmp_path / "bin.json")
    with pytest.raises(ArtifactError, match="cannot read"):
        load(tmp_path / "nope.json")


def test_future_schema_version_says_upgrade(tmp_path):
    doc = _doc(tmp_path)
    doc["schema_version"] = 99
    with pytest.raises(ArtifactError, match="schema_version 99.*Upgrade oobleck"):
        load(_write(tmp_path, doc))


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d["predictors"][0].update(demos="not a list"), r"predictors\[0\]\.demos"),
        (lambda d: d["predictors"][0].update(max_retries="3"), "max_retries"),
        (lambda d: d["predictors"][0].update(surprise=1), "surprise"),
        (lambda d: d.pop("predictors"), "predictors"),
        (lambda d: d["predictors"][0].update(config={"temperature": "hot"}), "temperature"),
        (lambda d: d["predictors"][0].update(config={"exec": "import os"}), "exec"),
        (lambda d: d["predictors"][1].update(name="generate_answer.predict"), "twice"),
        (lambda d: d["program"]["children"][0].update(attr="__class__"), "__class__"),
        (lambda d: d["program"].update(type="Predict"), "predictor"),
        (lambda d: d["predictors"][0]["adapter"].update(name="xml"), "adapters="),
        (
            lambda d: d["predictors"][0]["signature"]["fields"][0].update(
                type="os.system('x')", schema={"$ref": "#/x"}
            ),
            "signature",
        ),
        (lambda d: d["files"].append({"name": "x", "path": "../etc/passwd", "sha256": "0" * 64, "size": 1}), "path"),
    ],
)
def test_wrong_types_and_hostile_edits_raise_artifact_error(tmp_path, edit, match):
    doc = _doc(tmp_path)
    edit(doc)
    with pytest.raises(ArtifactError, match=match):
        load(_write(tmp_path, doc))


def test_class_paths_in_a_file_are_never_imported(tmp_path, monkeypatch):
    marker = tmp_path / "imported.txt"
    monkeypatch.setenv("OOBLECK_EVIL_MARKER", str(marker))
    doc = _doc(tmp_path)
    doc["program"]["class"] = "evil_module.Evil"
    doc["program"]["type"] = "evil_module:Evil"
    doc["program"]["children"][0]["value"]["class"] = "evil_module.Evil"
    art = load(_write(tmp_path, doc), lm=echo_lm())
    assert isinstance(art.program, FrozenModule) and art.class_path == "evil_module.Evil"
    assert "evil_module" not in sys.modules and not marker.exists()
    with pytest.raises(ArtifactError, match=r"was not passed to load \(load\(path, module_types="):
        art(question="q")


def test_edited_template_warns_and_strict_refuses(tmp_path):
    doc = _doc(tmp_path)
    doc["predictors"][1]["signature"]["instructions"] = "Hand-edited instruction."
    path = _write(tmp_path, doc)
    with pytest.warns(ArtifactWarning, match="renders differently"):
        art = load(path)
    assert art.predictors["check"].instructions == "Hand-edited instruction."
    with pytest.raises(ArtifactError, match="renders differently"):
        load(path, strict=True)


def test_never_saves_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_SERVICE_API_KEY", "sk-very-secret-123")
    p = Predict("question -> answer", demos=[{"question": "key?", "answer": "sk-very-secret-123"}])
    with pytest.raises(ArtifactError, match="MY_SERVICE_API_KEY"):
        p.save(tmp_path / "leak.json")
    assert not (tmp_path / "leak.json").exists()
    openai_lm = pytest.importorskip("oobleck.lm.openai").OpenAILM
    q = Predict(
        "question -> answer", lm=openai_lm("m", api_key="sk-other-secret-456", base_url="http://127.0.0.1:9/v1")
    )
    q.save(tmp_path / "ok.json")
    text = (tmp_path / "ok.json").read_text()
    assert "sk-other-secret-456" not in text and '"endpoint": "http://127.0.0.1:9/v1/"' in text


def test_unsaveable_values_explain_themselves(tmp_path):
    p = Predict("question -> answer", demos=[{"question": object(), "answer": "a"}])
    with pytest.raises(ArtifactError, match="demo 0.*not JSON data"):
        p.save(tmp_path / "x.json")
    p = Predict("question -> answer")
    p.provenance = {"score": float("nan")}
    with pytest.raises(ArtifactError, match="provenance"):
        p.save(tmp_path / "x.json")


# ---------------------------------------------------------------- property: save → load → same renders

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40) | st.sampled_from(
    ["[[ ## answer ## ]]", "\\[[ ## completed ## ]]", "{question}", "line\nbreak\r\n", "Ωμέγα 🚀", " padded "]
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    instructions=_text.filter(lambda s: s.strip()),
    demos=st.lists(st.fixed_dictionaries({"question": _text, "answer": _text}), max_size=3),
    question=_text,
    adapter=st.sampled_from(["chat", "json"]),
)
def test_property_save_load_same_renders_and_bytes(tmp_path, instructions, demos, question, adapter):
    p = Predict("question -> answer", demos=demos, adapter=oobleck.adapters.adapter_from_name(adapter))
    p.signature = p.signature.with_instructions(instructions)
    save(p, tmp_path / "p.json")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        art = load(tmp_path / "p.json", strict=True)
    assert art.render(question=question) == p.render(question=question)
    assert art.predictors["self"].instructions == p.instructions
    assert [dict(d) for d in art.predictors["self"].demos] == demos
    save(art.program, tmp_path / "q.json")
    assert (tmp_path / "q.json").read_bytes() == (tmp_path / "p.json").read_bytes()


def test_knn_and_ensemble_programs_round_trip_without_classes(tmp_path):
    from oobleck import Example
    from oobleck.optimize import KNN, ensemble

    rows = [Example(text=t, label=t[0]).with_inputs("text") for t in ("a b", "c d", "a c", "e f")]
    knn = KNN(k=2).compile(Predict("text -> label"), trainset=rows)
    knn.save(tmp_path / "knn.json")
    art = load(tmp_path / "knn.json", strict=True)
    assert type(art.program).__name__ == "KNNFewShot" and art.runnable
    assert art.render_calls(text="a x")[0].messages == knn.render_calls(text="a x")[0].messages

    ens = ensemble([Predict("q -> a"), ChainOfThought("q -> a")], size=2)
    ens.save(tmp_path / "ens.json")
    art = load(tmp_path / "ens.json", strict=True)
    assert type(art.program).__name__ == "Ensemble" and list(art.predictors) == ["programs[0]", "programs[1].predict"]
    with context(lm=FakeLM([{"reasoning": "r", "a": "x"}], cycle=True)):
        assert art(q="hi").a == "x"


def test_module_types_are_per_load_never_process_wide(tmp_path):
    Vote(2).save(tmp_path / "vote.json")
    assert type(load(tmp_path / "vote.json", module_types={"Vote": Vote}).program) is Vote
    again = load(tmp_path / "vote.json")  # the earlier call left nothing behind
    assert isinstance(again.program, FrozenModule) and again.program.class_path.endswith(".Vote")
    assert not again.runnable
    text = (tmp_path / "vote.json").read_text()
    with pytest.raises(ArtifactError, match="module_types"):
        load(tmp_path / "vote.json", module_types={"Vote": Predict})
    with pytest.raises(ArtifactError, match="module_types"):
        loads(text, module_types={"Vote": "tests.Vote"})  # type: ignore[dict-item]


def test_a_user_class_named_like_a_builtin_is_not_rebuilt_as_the_builtin(tmp_path):
    class ChainOfThought(Module):  # the user's own, not oobleck's
        def __init__(self):
            self.step = Predict("question -> answer")

        def forward(self, question):
            return self.step(question=question)

    ChainOfThought().save(tmp_path / "mine.json")
    art = load(tmp_path / "mine.json")
    assert isinstance(art.program, FrozenModule)
    assert type(load(tmp_path / "mine.json", module_types={"ChainOfThought": ChainOfThought}).program) is ChainOfThought


def test_text_nested_too_deep_is_refused_by_the_depth_check_before_parsing():
    for text in ("[" * 100_000, "[" * 100_000 + "]" * 100_000, '{"a":' * 5000 + "1" + "}" * 5000):
        with pytest.raises(ArtifactError, match="deeper than 64 levels"):
            loads(text)
    # brackets inside strings are text, not nesting
    with pytest.raises(ArtifactError, match="not an oobleck artifact"):
        loads('{"format": "' + "[" * 10_000 + '"}')


# ---------------------------------------------------------------- loading options


class ShoutAdapter(oobleck.ChatAdapter):
    """An adapter oobleck does not ship: upper-cases the instructions."""

    name = "shout"
    version = "2"

    def _system(self, signature):  # type: ignore[no-untyped-def]
        return super()._system(signature).upper()


def test_an_adapter_oobleck_does_not_ship_loads_with_adapters(tmp_path):
    p = Predict("question -> answer", adapter=ShoutAdapter(), demos=[{"question": "q", "answer": "a"}])
    p.save(tmp_path / "shout.json")
    with pytest.raises(ArtifactError, match="adapters="):
        load(tmp_path / "shout.json")
    art = load(tmp_path / "shout.json", adapters={"shout": ShoutAdapter()})
    assert isinstance(art.predictors["self"].adapter, ShoutAdapter)
    assert art.render(question="x") == p.render(question="x")
    assert art.render(question="x")[0].content.isupper()


def test_an_adapter_version_change_warns_and_strict_refuses(tmp_path):
    Predict("question -> answer", adapter=ShoutAdapter()).save(tmp_path / "v2.json")
    data = json.loads((tmp_path / "v2.json").read_text())
    data["predictors"][0]["adapter"]["version"] = "1"
    (tmp_path / "v1.json").write_text(json.dumps(data))
    with pytest.warns(ArtifactWarning, match="version 1, this one is 2"):
        load(tmp_path / "v1.json", adapters={"shout": ShoutAdapter()})
    with pytest.raises(ArtifactError, match="version 1, this one is 2"):
        load(tmp_path / "v1.json", adapters={"shout": ShoutAdapter()}, strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load(tmp_path / "v2.json", adapters={"shout": ShoutAdapter()}, strict=True)


def test_loads_gives_the_same_program_as_load(tmp_path):
    p = Predict("question -> answer: int", demos=[{"question": "2+2?", "answer": 4}], temperature=0.2)
    p.provenance = {"optimizer": "Manual"}
    p.save(tmp_path / "p.json")
    text = (tmp_path / "p.json").read_text()
    from_text, from_file = loads(text), load(tmp_path / "p.json")
    assert from_text.render(question="q") == from_file.render(question="q") == p.render(question="q")
    assert from_text.predictors["self"].config == {"temperature": 0.2} and from_text.provenance == {
        "optimizer": "Manual"
    }
    assert loads(text.encode()).to_dict() == from_file.to_dict()
    assert from_text.source == "artifact text"


def test_the_size_limit_is_checked_before_parsing(tmp_path, monkeypatch):
    from oobleck.artifact import _schema

    Predict("question -> answer").save(tmp_path / "p.json")
    size = (tmp_path / "p.json").stat().st_size
    monkeypatch.setattr(_schema, "MAX_BYTES", size - 1)
    for attempt in (lambda: load(tmp_path / "p.json"), lambda: loads((tmp_path / "p.json").read_bytes())):
        with pytest.raises(ArtifactError, match=f"{size - 1}"):
            attempt()
    monkeypatch.setattr(_schema, "MAX_BYTES", size)
    assert load(tmp_path / "p.json").input_names == ["question"]
