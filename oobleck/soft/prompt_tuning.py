"""PromptTuning: trainable virtual tokens before the input (Lester et al. 2021), via PEFT.

Initialised at random, from vocabulary embeddings, from any text, or from the text of the
predictor's compiled hard prompt (``init="hard_prompt"``): then the soft prompt *replaces*
the instructions, field list and demos it was made from (they are the same tokens at step
0, so training starts exactly at the hard prompt's score) and is tuned from there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from oobleck.errors import ConfigError
from oobleck.example import Example
from oobleck.predict import Predict
from oobleck.soft import _data
from oobleck.soft._base import Metric, SoftPromptOptimizer
from oobleck.soft._data import Cover

__all__ = ["PromptTuning"]


class PromptTuning(SoftPromptOptimizer):
    """Prompt tuning of each predictor that runs on a TransformersLM.

    Args:
        metric: chooses the checkpoint kept (on the valset).
        init: ``"hard_prompt"`` (default: start from the compiled prompt's own text, which the
            soft prompt then replaces), ``"vocab"`` (embeddings of random vocabulary tokens),
            ``"random"``, or ``"text"`` with ``init_text``.
        init_text: the text to start from with ``init="text"``.
        **options: see :class:`~oobleck.soft._base.SoftPromptOptimizer` (steps, max_time_s,
            batch_size, lr, eval_every, num_virtual_tokens, predictors, num_threads, progress).

    Example:
        >>> tuned = PromptTuning(metric=exact_match, steps=30).compile(
        ...     compiled, trainset=train, valset=dev)              # doctest: +SKIP
    """

    method = "prompt_tuning"
    default_lr = 3e-3

    def __init__(
        self,
        *,
        metric: Metric,
        init: Literal["hard_prompt", "vocab", "random", "text"] = "hard_prompt",
        init_text: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(metric=metric, **options)
        if init not in ("hard_prompt", "vocab", "random", "text"):
            raise ConfigError(f"init must be 'hard_prompt', 'vocab', 'random' or 'text', got {init!r}")
        if (init == "text") != bool(init_text):
            raise ConfigError("init='text' needs init_text=..., and init_text needs init='text'")
        self.init = init
        self.init_text = init_text

    def _method_settings(self) -> dict[str, Any]:
        if self.init == "text":
            return {"init": "text", "init_text": self.init_text}
        # hard_prompt: the text is the predictor's own prompt, known only when compiling
        return {} if self.init == "hard_prompt" else {"init": self.init}

    def _settings(self) -> dict[str, Any]:
        return {**super()._settings(), "init": self.init}

    def _cover(self, predictor: Predict, lm: Any, trainset: Sequence[Example]) -> Cover | None:
        if self.init != "hard_prompt":
            return None
        first = next(ex for ex in trainset if _data.fits(predictor, ex))
        return _data.hard_prompt_cover(predictor, lm, first)
