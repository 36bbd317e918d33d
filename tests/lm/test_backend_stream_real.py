"""Each real backend streams through TEXT_SINK: the pieces, joined, are the answer it returns."""

from __future__ import annotations

import pytest

from oobleck.lm.base import TEXT_SINK
from oobleck.lm.types import LMRequest, Message

pytestmark = pytest.mark.slow

REQUEST = LMRequest(
    messages=(Message(role="user", content="Name three colours, then stop."),),
    max_tokens=24,
    stop=("[[ ## completed ## ]]",),
)


def streamed(lm, request):
    pieces: list[str] = []
    token = TEXT_SINK.set(pieces.append)
    try:
        response = lm.complete(request)
    finally:
        TEXT_SINK.reset(token)
    return pieces, response


@pytest.mark.parametrize("backend", ["local_lm", "transformers_lm"])
def test_pieces_join_to_the_plain_answer(backend, request):
    lm = request.getfixturevalue(backend)
    pieces, response = streamed(lm, REQUEST)
    assert len(pieces) > 3 and all(pieces)
    assert "".join(pieces) == response.text
    plain = lm.complete(REQUEST)
    assert plain.text == response.text and plain.choices[0].finish_reason == response.choices[0].finish_reason
    assert plain.usage.completion_tokens == response.usage.completion_tokens


@pytest.mark.parametrize("backend", ["local_lm", "transformers_lm"])
def test_a_sink_that_raises_stops_the_call(backend, request):
    lm = request.getfixturevalue(backend)

    class Left(BaseException):
        pass

    seen: list[str] = []

    def sink(text: str) -> None:
        seen.append(text)
        if len(seen) == 2:
            raise Left

    token = TEXT_SINK.set(sink)
    try:
        with pytest.raises(Left):
            lm.complete(REQUEST)
    finally:
        TEXT_SINK.reset(token)
    assert len(seen) == 2
    assert lm.complete(REQUEST).text  # still usable
