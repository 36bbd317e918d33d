"""SoftPrompt: trained vectors a predictor sends along with its messages.

A soft prompt is data, like demos and instructions: the tensors (a safetensors blob) plus
what a backend needs to apply them. Nothing here imports torch; the ``transformers`` backend
reads the tensors, the ``oobleck.soft`` optimizers write them. A request carries the whole
object, but only its description and the sha256 of the tensors go into cache keys, traces and
artifact JSON; the bytes travel as a side file.

Two kinds exist, by where the vectors enter the model:

- ``"embeddings"``: virtual token embeddings placed before the input tokens (prompt tuning,
  P-tuning, multi-task prompt tuning); tensor ``prompt`` of shape ``(tokens, hidden)``.
- ``"kv"``: virtual keys and values at every layer (prefix tuning); tensor ``prefix`` of shape
  ``(tokens, layers * 2 * heads * head_dim)`` in PEFT's layout.

``covers`` > 0 means the soft prompt *stands in for* the first ``covers`` chat messages
(a prompt initialised from the text of a compiled hard prompt replaces that text): the backend
drops those messages and checks they are still the ones it was trained to replace
(``covers_sha256``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from oobleck.errors import ConfigError

if TYPE_CHECKING:  # types.py imports this module
    from oobleck.lm.types import Message

__all__ = ["SoftPrompt", "messages_digest"]

METHODS = ("prompt_tuning", "prefix_tuning", "p_tuning", "multitask_prompt_tuning")


def messages_digest(messages: Sequence[Message]) -> str:
    """The sha256 of some chat messages (what a covering soft prompt checks)."""
    blob = json.dumps([[m.role, m.content] for m in messages], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class SoftPrompt(BaseModel):
    """A trained soft prompt: tensors plus what is needed to apply (and keep training) them.

    Attributes:
        method: ``prompt_tuning``, ``prefix_tuning``, ``p_tuning`` or ``multitask_prompt_tuning``.
        kind: ``embeddings`` (input virtual tokens) or ``kv`` (keys/values at every layer).
        num_virtual_tokens: how many virtual tokens.
        base_model: the identity of the model it was trained on (a backend on another model
            refuses it).
        covers: how many leading chat messages it replaces (0: it is prepended to them all).
        covers_sha256: the digest of those messages when ``covers`` > 0.
        config: the PEFT configuration it was trained with (JSON), for training further.
        sha256: the digest of ``data`` (the identity of the soft prompt; part of cache keys).
        norm: the L2 norm of the applied tensor (shown by ``oobleck diff``).
        data: the safetensors bytes: the applied tensor plus the trainable state. Never in
            JSON dumps; artifacts store it as a side file.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["prompt_tuning", "prefix_tuning", "p_tuning", "multitask_prompt_tuning"]
    kind: Literal["embeddings", "kv"]
    num_virtual_tokens: int = Field(ge=1, le=100_000)
    base_model: dict[str, str]
    covers: int = Field(default=0, ge=0)
    covers_sha256: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    sha256: str
    norm: float = 0.0
    data: bytes = Field(default=b"", exclude=True, repr=False)

    @classmethod
    def from_bytes(cls, data: bytes, **description: Any) -> SoftPrompt:
        """Build one from safetensors bytes, computing their sha256."""
        return cls(sha256=hashlib.sha256(data).hexdigest(), data=bytes(data), **description)

    def describe(self) -> dict[str, Any]:
        """The JSON description (everything but the tensors)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_description(cls, description: Mapping[str, Any], data: bytes) -> SoftPrompt:
        """Rebuild from :meth:`describe` output and the side file, checking the digest.

        Raises:
            ConfigError: the description is malformed or the bytes do not match its sha256.
        """
        from pydantic import ValidationError

        try:
            prompt = cls.model_validate({**description, "data": data})
        except ValidationError as exc:
            raise ConfigError(f"not a soft prompt description: {exc.errors()[0]['msg']}") from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != prompt.sha256:
            raise ConfigError(
                f"soft prompt tensors do not match their description (sha256 {digest[:12]}... "
                f"instead of {prompt.sha256[:12]}...)"
            )
        if prompt.covers and not prompt.covers_sha256:
            raise ConfigError("a soft prompt that covers messages needs covers_sha256")
        return prompt

    def split(self, messages: Sequence[Message]) -> tuple[Message, ...]:
        """The messages left to render after the ones this soft prompt replaces.

        Raises:
            ConfigError: the leading messages are not the ones it was trained to replace.
        """
        if not self.covers:
            return tuple(messages)
        if len(messages) <= self.covers or messages_digest(messages[: self.covers]) != self.covers_sha256:
            raise ConfigError(
                f"this soft prompt replaces the first {self.covers} message(s) it was trained from, "
                "but the request starts with different ones (the instructions or demos changed after "
                "soft-prompt training); train the soft prompt again on the new hard prompt"
            )
        return tuple(messages[self.covers :])

    def __repr__(self) -> str:
        return f"SoftPrompt({self.method}, tokens={self.num_virtual_tokens}, sha256={self.sha256[:12]})"
