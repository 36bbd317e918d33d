"""Refine: BestOfN where each attempt is told how the previous one fell short.

After an attempt whose reward is below the threshold, the next attempt runs under
``oobleck.context(hint=...)``: every predictor of the module gets, after its system message's
text, the previous attempt's answer, its score and the reward function's feedback (or, when the
reward gives none, a note that it was not good enough). The hint is part of the prompt only:
it never enters demos, and a trace shows it in the messages of each predictor call.
"""

from __future__ import annotations

from oobleck.modules.best_of_n import BestOfN

__all__ = ["Refine"]


class Refine(BestOfN):
    """Up to ``n`` attempts, each seeing feedback on the one before; stops at ``threshold``.

    Takes the arguments of :class:`~oobleck.modules.BestOfN`. ``reward_fn(inputs, prediction)``
    returns a number, a ``(score, feedback)`` pair or ``{"score": ..., "feedback": ...}``; the
    feedback goes into the next attempt's prompts as described in the module docstring.

    Example:
        >>> from oobleck import FakeLM, Predict
        >>> lm = FakeLM([{"answer": "four"}, {"answer": "4"}])
        >>> reward = lambda inputs, pred: (pred.answer.isdigit(), "answer with digits")
        >>> out = Refine(Predict("question -> answer", lm=lm), 3, reward, threshold=1.0)(question="2+2?")
        >>> out.answer, "answer with digits" in lm.requests[1].messages[0].content
        ('4', True)
    """

    _feedback = True
