"""LocalLM: the real SmolLM2 model in-process."""

from __future__ import annotations

import json

import pytest

from oobleck import (
    ChainOfThought,
    ConfigError,
    JSONAdapter,
    LMRequest,
    LMResponseError,
    Message,
    Predict,
)
from oobleck.lm.local import LocalLM, default_model_path

pytestmark = pytest.mark.slow
SENTIMENT = "text -> label: Literal['positive', 'negative']"


def test_default_model_is_the_packaged_smollm2():
    assert default_model_path().name == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_predict_with_grammar_constrained_json(local_lm):
    program = Predict(SENTIMENT, lm=local_lm, adapter=JSONAdapter())
    for text in ["a wonderful, moving film", "a dull and lifeless mess", "it was fine i guess"]:
        assert program(text=text).label in ("positive", "negative")


def test_constrained_json_is_written_on_one_line(local_lm):
    # llama.cpp's own response_format grammar lets the model spend tokens on newlines and
    # indentation; LocalLM sends a compact grammar instead: one line, single separators.
    schema = {
        "type": "object",
        "properties": {"reasoning": {"type": "string"}, "label": {"type": "string", "enum": ["positive", "negative"]}},
        "required": ["reasoning", "label"],
        "additionalProperties": False,
    }
    request = LMRequest(
        messages=(Message(role="user", content="Is 'a wonderful film' positive?"),),
        max_tokens=60,
        response_format={"name": "answer", "schema": schema},
    )
    text = local_lm.complete(request).choices[0].text
    assert text.startswith('{"reasoning": "') and "\n" not in text
    if text.endswith("}"):  # not cut at max_tokens
        assert json.loads(text)["label"] in ("positive", "negative")


def test_chain_of_thought_typed_output(local_lm):
    pred = ChainOfThought("question -> answer: int", lm=local_lm, adapter=JSONAdapter())(question="What is 3 plus 4?")
    assert isinstance(pred.answer, int) and isinstance(pred.reasoning, str)


def test_samples_and_logprobs(local_lm):
    req = LMRequest(
        messages=(Message(role="user", content="Name a color."),),
        n=2,
        temperature=1.0,
        max_tokens=8,
        logprobs=True,
        top_logprobs=1,
        seed=1,
    )
    response = local_lm.complete(req)
    assert len(response.choices) == 2
    assert response.choices[0].logprobs and response.usage.completion_tokens > 0


def test_server_errors_are_translated(local_lm):
    with pytest.raises(LMResponseError):
        local_lm.complete(LMRequest(messages=(Message(role="user", content="x"),), extra={"top_k": "lots"}))


def test_threads_default_to_half_the_cpus():
    import os

    assert LocalLM().n_threads == max(1, (os.cpu_count() or 2) // 2)  # no model loads here
    assert LocalLM(n_threads=3).n_threads == 3


def test_bad_model_path():
    with pytest.raises(ConfigError, match="no GGUF model file"):
        LocalLM("/nonexistent/model.gguf")


def test_scoring_is_declared_and_a_single_completion_scores(local_lm):
    # Scoring itself is tested in test_label_scores_real.py; here: the capability and the one-string form.
    assert local_lm.capabilities.scoring
    response = local_lm.complete(LMRequest(messages=(Message(role="user", content="x"),), score="y"))
    (choice,) = response.choices
    assert choice.text == "y" and choice.finish_reason == "score" and choice.logprob < 0
    with pytest.raises(ConfigError, match="at least one completion"):
        local_lm.complete(LMRequest(messages=(Message(role="user", content="x"),), score=()))


def test_serving_shares_the_in_process_model(server_url, local_lm):
    # One llama.cpp instance answers both ways: two would compete for the same cores.
    port = int(server_url.rsplit(":", 1)[1].split("/")[0])
    assert local_lm.server() is local_lm._http[port]
    assert local_lm.serve() == server_url


def test_close_waits_for_calls_in_flight_then_frees_the_port():
    import socket
    import threading
    import time

    lm = LocalLM(max_tokens=48, n_parallel=1)
    url = lm.serve()
    port = int(url.rsplit(":", 1)[1].split("/")[0])

    def port_open() -> bool:
        with socket.socket() as s:
            s.settimeout(2)
            return s.connect_ex(("127.0.0.1", port)) == 0

    answers: list[str] = []
    call = threading.Thread(target=lambda: answers.append(lm("Count from one to fifty in words.")))
    call.start()
    deadline = time.monotonic() + 60
    while lm._inflight == 0 and call.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert port_open()
    lm.close()
    # close() returned: the call in flight finished on the old server and the port is free
    assert answers and answers[0]
    assert not port_open()
    call.join()
    # the model restarts on the next call
    assert isinstance(lm("Say hi."), str)
    lm.close()


def test_the_served_url_keeps_its_model_alive_after_the_lm_object_goes():
    import gc
    import socket
    import urllib.request
    import weakref

    from oobleck import OpenAILM

    def answers(url: str) -> bool:
        with urllib.request.urlopen(url + "/models", timeout=10) as reply:
            return reply.status == 200

    url = LocalLM(max_tokens=8, n_parallel=1).serve()  # nothing but the URL refers to the LocalLM
    held = weakref.ref(url.lm)
    gc.collect()
    assert held() is not None and answers(str(url))
    assert isinstance(OpenAILM("smollm2", base_url=url, max_tokens=8)("Say hi."), str)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    del url
    gc.collect()
    assert held() is None  # the URL was the last reference: the model and its port are freed
    with socket.socket() as s:
        s.settimeout(2)
        assert s.connect_ex(("127.0.0.1", port)) != 0
