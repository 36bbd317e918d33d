"""PrefixTuning: trainable keys and values at every layer (Li & Liang 2021), via PEFT."""

from __future__ import annotations

from typing import Any

from oobleck.soft._base import Metric, SoftPromptOptimizer

__all__ = ["PrefixTuning"]


class PrefixTuning(SoftPromptOptimizer):
    """Prefix tuning of each predictor that runs on a TransformersLM.

    The prefix is placed before the whole prompt, which the predictor still sends.

    Args:
        metric: chooses the checkpoint kept (on the valset).
        projection: reparameterise the prefix through an MLP while training (PEFT's
            ``prefix_projection``); what is saved and applied is its output either way.
        encoder_hidden_size: that MLP's hidden size.
        **options: see :class:`~oobleck.soft._base.SoftPromptOptimizer`.
    """

    method = "prefix_tuning"
    default_lr = 1e-2

    def __init__(
        self, *, metric: Metric, projection: bool = False, encoder_hidden_size: int = 128, **options: Any
    ) -> None:
        super().__init__(metric=metric, **options)
        self.projection = projection
        self.encoder_hidden_size = encoder_hidden_size

    def _method_settings(self) -> dict[str, Any]:
        return {"projection": self.projection, "encoder_hidden_size": self.encoder_hidden_size}
