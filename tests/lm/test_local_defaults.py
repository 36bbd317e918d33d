"""LocalLM() with no settings is reproducible: greedy, with a seed derived from the request."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from oobleck import LMRequest, Message
from oobleck.lm.local import LocalLM, request_seed

POEM = LMRequest(messages=(Message(role="user", content="Write a short poem about the sea."),), max_tokens=16)

# Run in a fresh interpreter: the same requests on a new LocalLM() with no settings.
_CHILD = """
import json, sys
from oobleck import LMRequest, LocalLM
reqs = [LMRequest.model_validate_json(line) for line in sys.stdin.read().splitlines()]
lm = LocalLM(n_parallel=1)
print(json.dumps([lm.complete(r).text for r in reqs]))
lm.close()
"""


def test_request_seed_is_a_function_of_the_whole_request():
    assert request_seed(POEM) == request_seed(POEM.model_copy())
    others = {
        request_seed(POEM.model_copy(update={"sample_index": 1})),
        request_seed(POEM.model_copy(update={"temperature": 1.0})),
        request_seed(POEM.model_copy(update={"messages": (Message(role="user", content="Another."),)})),
    }
    assert request_seed(POEM) not in others and len(others) == 3
    # The cache policy is not part of what is asked, so it does not change the sample.
    assert request_seed(POEM.model_copy(update={"cache": "off"})) == request_seed(POEM)


def test_defaults_are_greedy_unless_asked(tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")  # never loaded: only the settings are read
    assert LocalLM(model).defaults["temperature"] == 0.0
    assert LocalLM(model, temperature=0.7, seed=3).defaults == {"temperature": 0.7, "seed": 3}


@pytest.mark.slow
def test_same_answers_in_a_fresh_process_greedy_and_sampled():
    sampled = POEM.model_copy(update={"temperature": 1.0, "sample_index": 1})
    requests = [POEM, sampled]
    lm = LocalLM(n_parallel=1)
    try:
        here = [lm.complete(r).text for r in requests]
        again = [lm.complete(r).text for r in requests]
        fresh_sample = lm.complete(sampled.model_copy(update={"sample_index": 2})).text
    finally:
        lm.close()
    assert here == again
    # A new sample_index asks for a new sample: a different, still repeatable, answer.
    assert fresh_sample != here[1]
    child = subprocess.run(
        [sys.executable, "-c", _CHILD],
        input="\n".join(r.model_dump_json() for r in requests),
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ),
        timeout=600,
    )
    assert json.loads(child.stdout.strip().splitlines()[-1]) == here


def test_a_served_url_survives_copy_deepcopy_and_asdict():
    # ServedURL is a str carrying its LocalLM: copy/deepcopy (and dataclasses.asdict, which
    # deep-copies) rebuilt it through str's __getnewargs__, without the LM: TypeError.
    import copy
    import dataclasses
    import pickle

    from oobleck.lm.local import ServedURL

    holder = object()  # stands in for the LocalLM (a real one would load the model)
    url = ServedURL("http://127.0.0.1:18080/v1", holder)  # type: ignore[arg-type]

    @dataclasses.dataclass
    class Settings:
        base_url: str

    for copied in (copy.copy(url), copy.deepcopy(url), dataclasses.asdict(Settings(url))["base_url"]):
        assert copied == url and copied.lm is holder
    assert pickle.loads(pickle.dumps(url)) == "http://127.0.0.1:18080/v1"  # the LM stays in its process
