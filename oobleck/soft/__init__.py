"""Soft-prompt optimizers: train virtual tokens for predictors that run on a TransformersLM.

Built on PEFT (``pip install 'oobleck[transformers]'``); torch and peft are imported only in
this package. Each optimizer compiles a program like the hard-prompt optimizers do and returns
a copy whose predictors carry a :class:`~oobleck.lm.soft_prompt.SoftPrompt`, which artifacts
save as a safetensors side file.

- :class:`PromptTuning`: virtual tokens at the input; from the compiled hard prompt's text,
  from vocabulary, from any text, or at random.
- :class:`PrefixTuning`: virtual keys and values at every layer.
- :class:`PTuning`: virtual tokens from an MLP or LSTM prompt encoder.
- :class:`MultitaskPromptTuning`: one prompt shared across tasks, then adapted to each.
"""

from __future__ import annotations

try:
    import peft  # noqa: F401
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the install
    from oobleck.errors import ConfigError

    raise ConfigError(
        "oobleck.soft needs torch and peft: install the CPU build of torch first "
        "(pip install torch --index-url https://download.pytorch.org/whl/cpu), then "
        f"pip install 'oobleck[transformers]' ({exc})"
    ) from exc

from oobleck.soft._base import SoftPromptOptimizer
from oobleck.soft.multitask import MultitaskPromptTuning, Task
from oobleck.soft.p_tuning import PTuning
from oobleck.soft.prefix_tuning import PrefixTuning
from oobleck.soft.prompt_tuning import PromptTuning

__all__ = ["MultitaskPromptTuning", "PTuning", "PrefixTuning", "PromptTuning", "SoftPromptOptimizer", "Task"]
