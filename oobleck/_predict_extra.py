"""What Predict does beyond generate-then-parse: label scoring and soft prompts.

``mode="score"`` turns a call into one scoring request: every label of the signature's single
Literal output, written the way the adapter would write it, is scored after the same messages,
and the most likely one is the answer. A soft prompt rides on the request; a backend that
cannot apply it is refused here, before any call. Both are saved in artifacts through
Predict's ``dump_extra``/``load_extra`` (the soft prompt's tensors as a safetensors side file
referenced by sha256).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from oobleck import _types
from oobleck.errors import ArtifactError, ConfigError, LMResponseError
from oobleck.lm.base import LM
from oobleck.lm.soft_prompt import SoftPrompt
from oobleck.lm.types import LMRequest, LMResponse
from oobleck.signature import Signature

if TYPE_CHECKING:
    from oobleck.adapters.base import Adapter
    from oobleck.predict import Predict

# Decoding parameters that mean nothing when scoring (no text is generated).
_GENERATION_ONLY = ("temperature", "max_tokens", "stop", "n", "seed", "top_p", "logprobs", "top_logprobs")


def labels(signature: Signature) -> tuple[str, tuple[Any, ...]]:
    """The output field and its labels, for a signature that can be scored.

    Raises:
        ConfigError: not exactly one output field, or it is not a Literal/Enum.
    """
    outputs = list(signature.output_fields.values())
    choices = _types.literal_choices(outputs[0].type) if len(outputs) == 1 else None
    if not choices:
        raise ConfigError(
            f"mode='score' ranks the labels of a single Literal (or Enum) output, but {signature} has "
            f"{len(outputs)} output field(s){'' if len(outputs) != 1 else ' of type ' + _types.type_to_str(outputs[0].type)}; "
            "use mode='generate'"
        )
    return outputs[0].name, tuple(choices)


def request_params(predictor: Predict, adapter: Adapter, lm: LM) -> dict[str, Any]:
    """The LMRequest parameters of one call: decoding settings or labels to score, soft prompt."""
    capabilities = lm.capabilities
    where = f"Predict({str(predictor.signature)!r}) on {type(lm).__name__}"
    params: dict[str, Any]
    if predictor.mode == "score":
        if not capabilities.scoring:
            raise ConfigError(
                f"{where}: mode='score' needs a backend that scores completions (capabilities.scoring); "
                f"{type(lm).__name__} only generates. Use TransformersLM, or mode='generate'"
            )
        name, choices = labels(predictor.signature)
        params = {k: v for k, v in predictor.config.items() if k not in _GENERATION_ONLY}
        params["score"] = tuple(adapter.format_outputs(predictor.signature, {name: c}) for c in choices)
    else:
        params = predictor._settings_params(adapter, lm)
    if predictor.soft_prompt is not None:
        if not capabilities.soft_prompts:
            raise ConfigError(
                f"{where}: this predictor carries a trained soft prompt ({predictor.soft_prompt!r}), which "
                f"{type(lm).__name__} cannot apply (it only sends text). Run it on a TransformersLM of the "
                "model it was trained on, or drop the soft prompt (predictor.soft_prompt = None) to use the "
                "hard prompt alone"
            )
        params["soft_prompt"] = predictor.soft_prompt
    return params


def best_label(signature: Signature, request: LMRequest, response: LMResponse) -> dict[str, Any]:
    """The output values for the most likely label (ties go to the first label)."""
    name, choices = labels(signature)
    if len(response.choices) != len(choices):
        raise LMResponseError(
            f"asked to score {len(choices)} labels, the backend returned {len(response.choices)} scores"
        )
    scores = [c.logprob for c in response.choices]
    if any(math.isnan(s) for s in scores):
        raise LMResponseError("the backend returned scores without token log-probabilities")
    best = max(range(len(choices)), key=lambda i: (scores[i], -i))
    return {name: _types.validate(signature.output_fields[name].type, choices[best])}


def dump_extra(predictor: Predict, files: Any) -> dict[str, Any] | None:
    """The predictor's mode and soft prompt as artifact state (tensors into a side file)."""
    extra: dict[str, Any] = {}
    if predictor.mode != "generate":
        extra["mode"] = predictor.mode
    prompt = predictor.soft_prompt
    if prompt is not None:
        name = f"soft-{prompt.sha256[:24]}.safetensors"
        if name not in files.names():  # two predictors may share one soft prompt
            files.write(name, prompt.data)
        extra["soft_prompt"] = {**prompt.describe(), "file": name}
    return extra or None


def load_extra(predictor: Predict, extra: Mapping[str, Any], files: Any) -> None:
    """Restore the mode and soft prompt; the side file is checked against the recorded sha256."""
    unknown = sorted(set(extra) - {"mode", "soft_prompt"})
    if unknown:
        raise ArtifactError(f"unknown predictor state {unknown}")
    mode = extra.get("mode", "generate")
    if mode not in ("generate", "score"):
        raise ArtifactError(f"mode must be 'generate' or 'score', got {mode!r}")
    if mode == "score":
        try:
            labels(predictor.signature)
        except ConfigError as exc:
            raise ArtifactError(str(exc)) from None
    prompt = None
    described = extra.get("soft_prompt")
    if described is not None:
        if not isinstance(described, Mapping) or not isinstance(described.get("file"), str):
            raise ArtifactError("soft_prompt must be a description with the name of its side file")
        description = {k: v for k, v in described.items() if k != "file"}
        try:
            prompt = SoftPrompt.from_description(description, files.read(described["file"]))
        except ConfigError as exc:
            raise ArtifactError(f"unusable soft prompt: {exc}") from None
    predictor.mode = mode
    predictor.soft_prompt = prompt
