"""PTuning: virtual tokens produced by a small prompt encoder (Liu et al. 2021), via PEFT."""

from __future__ import annotations

from typing import Any, Literal

from oobleck.errors import ConfigError
from oobleck.soft._base import Metric, SoftPromptOptimizer

__all__ = ["PTuning"]


class PTuning(SoftPromptOptimizer):
    """P-tuning of each predictor that runs on a TransformersLM.

    The encoder (an MLP or an LSTM) is needed only while training: what is saved and applied is
    the virtual tokens it produces, placed before the whole prompt.

    Args:
        metric: chooses the checkpoint kept (on the valset).
        encoder: ``"MLP"`` or ``"LSTM"``.
        encoder_hidden_size: the encoder's hidden size.
        **options: see :class:`~oobleck.soft._base.SoftPromptOptimizer`.
    """

    method = "p_tuning"
    default_lr = 1e-3

    def __init__(
        self, *, metric: Metric, encoder: Literal["MLP", "LSTM"] = "MLP", encoder_hidden_size: int = 128, **options: Any
    ) -> None:
        super().__init__(metric=metric, **options)
        if encoder not in ("MLP", "LSTM"):
            raise ConfigError(f"encoder must be 'MLP' or 'LSTM', got {encoder!r}")
        self.encoder = encoder
        self.encoder_hidden_size = encoder_hidden_size

    def _method_settings(self) -> dict[str, Any]:
        return {"encoder": self.encoder, "encoder_hidden_size": self.encoder_hidden_size}
