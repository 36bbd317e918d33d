"""The torch side of TransformersLM: batched decoding and scoring with an optional soft prompt.

One decode loop serves every request shape: rows are left-padded into one batch, a soft prompt
enters either as virtual token embeddings before the input or as keys/values in the cache,
positions are counted from the attention mask (so padding never shifts them), and each row
samples with its own seeded generator (so a row's text does not depend on what else was in
the batch). Imported only by :mod:`oobleck.lm.transformers`, after torch.
"""

from __future__ import annotations

import functools
import inspect
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from oobleck.errors import ConfigError
from oobleck.lm.soft_prompt import SoftPrompt


@dataclass(slots=True)
class Applied:
    """A soft prompt's tensor, ready to apply: ``(tokens, hidden)`` or ``(layers, 2, heads, tokens, dim)``."""

    kind: str
    tensor: torch.Tensor

    @property
    def tokens(self) -> int:
        return int(self.tensor.shape[0] if self.kind == "embeddings" else self.tensor.shape[3])


def applied(prompt: SoftPrompt, model: Any) -> Applied:
    """Read the tensor a soft prompt applies from its safetensors bytes and check its shape."""
    from safetensors.torch import load

    try:
        tensors = load(prompt.data)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise ConfigError(f"{prompt!r} holds no readable safetensors data ({exc})") from None
    name = "prompt" if prompt.kind == "embeddings" else "prefix"
    if name not in tensors:
        raise ConfigError(f"{prompt!r} has no {name!r} tensor (found {sorted(tensors)})")
    raw = tensors[name]
    if not raw.is_floating_point():
        raise ConfigError(
            f"{prompt!r} has a {name} tensor of dtype {raw.dtype}, but soft prompt vectors are floating point; "
            "the side file is not one oobleck.soft wrote: train the soft prompt again"
        )
    tensor = raw.to(dtype=model.dtype)
    config = model.config.get_text_config()
    hidden = int(config.hidden_size)
    tokens = prompt.num_virtual_tokens
    if prompt.kind == "embeddings":
        shape: tuple[int, ...] = (tokens, hidden)
        expected = f"({tokens}, {hidden}) (tokens, hidden)"
    else:
        heads = int(config.num_attention_heads)
        kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
        head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
        shape = (int(config.num_hidden_layers), 2, kv_heads, tokens, head_dim)
        expected = f"{shape} (layers, 2, kv heads, tokens, head_dim)"
    if tuple(tensor.shape) != shape:
        raise ConfigError(
            f"{prompt!r} has a {name} tensor of shape {tuple(tensor.shape)}, but this model needs {expected} "
            f"for {tokens} virtual tokens; it was trained for another model, or its side file was swapped"
        )
    if not bool(torch.isfinite(tensor).all()):
        raise ConfigError(
            f"{prompt!r} has NaN or infinite values in its {name} tensor (in {model.dtype}); every answer "
            "with it would be meaningless: train it again (a lower lr), or use predictor.soft_prompt = None"
        )
    return Applied(prompt.kind, tensor)


def tensors_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    """The safetensors bytes of ``tensors`` (contiguous CPU copies), the same bytes for the same tensors."""
    from safetensors.torch import save

    return save({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()})


def read_tensors(data: bytes) -> dict[str, torch.Tensor]:
    """The tensors in safetensors bytes."""
    from safetensors.torch import load

    return load(data)


@functools.lru_cache(maxsize=8)
def _cache_arg(cls: Any) -> str:
    return "cache" if "cache" in inspect.signature(cls.forward).parameters else "past_key_values"


def cache_arg(model: Any) -> str:
    """The forward() argument that takes the KV cache (transformers 5 renamed it ``cache``)."""
    # typeshed's lru_cache wants Hashable, which mypy does not see in type[Any]; classes hash.
    return _cache_arg(type(model))  # type: ignore[arg-type]


def returned_cache(out: Any) -> Any:
    """The KV cache a forward() returned, under either name."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


@dataclass(slots=True)
class State:
    """A batch after prefill: the cache, the attention mask and each row's next position."""

    cache: Any
    mask: torch.Tensor
    next_pos: torch.Tensor


class PrefixCache:
    """Keys and values of recently seen prompt prefixes (a program's system message and demos).

    Every call of one predictor starts with the same tokens; computing them once and reusing
    their cache for every later batch makes a short-input call several times cheaper. Entries
    are batch-1 states, never mutated (each use copies them).
    """

    def __init__(self, size: int = 4, min_tokens: int = 16) -> None:
        self.size = size
        self.min_tokens = min_tokens
        self._entries: OrderedDict[tuple[Any, ...], State] = OrderedDict()
        self.hits = 0

    def find(self, soft_key: str, rows: list[list[int]]) -> tuple[int, State] | None:
        """The longest stored prefix shared by every row (leaving each row a token), if any."""
        shortest = min(len(r) for r in rows)
        best = None
        for key, state in self._entries.items():
            if key[0] != soft_key or len(key[1]) >= shortest or (best is not None and len(key[1]) <= len(best[0][1])):
                continue
            prefix = list(key[1])
            if all(r[: len(prefix)] == prefix for r in rows):
                best = (key, state)
        if best is None:
            return None
        self._entries.move_to_end(best[0])
        self.hits += 1
        return len(best[0][1]), best[1]

    def put(self, key: tuple[Any, ...], state: State) -> None:
        self._entries[key] = state
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


def _common_prefix(rows: list[list[int]]) -> int:
    shortest = min(len(r) for r in rows)
    n = 0
    while n < shortest - 1 and all(r[n] == rows[0][n] for r in rows):
        n += 1
    return n


def prefill(
    model: Any,
    rows: list[list[int]],
    soft: Applied | None,
    pad_id: int,
    *,
    keep: int = 1,
    prefixes: PrefixCache | None = None,
    soft_key: str = "",
) -> tuple[torch.Tensor, State]:
    """Run ``rows`` (with the soft prompt) and return the last ``keep`` logits per row.

    The tokens all rows share run once (or come from ``prefixes``); the rest run left-padded.
    """
    if prefixes is None:
        return _prefill(model, rows, soft, pad_id, keep)
    found = prefixes.find(soft_key, rows)
    if found is not None:
        common, base = found
    else:
        common = _common_prefix(rows)
        virtual = soft.tokens if soft is not None else 0
        if len(rows) < 2 or common < 1 or common + virtual < prefixes.min_tokens:
            return _prefill(model, rows, soft, pad_id, keep)
        _, base = _prefill(model, [rows[0][:common]], soft, pad_id, 1)
        prefixes.put((soft_key, tuple(rows[0][:common])), base)
    state = expand(base, [len(rows)])
    width = max(len(r) - common for r in rows)
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        rest = row[common:]
        tokens[i, width - len(rest) :] = torch.tensor(rest, dtype=torch.long)
        mask[i, width - len(rest) :] = 1
    return step(model, state, tokens, mask, keep=keep), state


def _prefill(
    model: Any, rows: list[list[int]], soft: Applied | None, pad_id: int, keep: int
) -> tuple[torch.Tensor, State]:
    from transformers import DynamicCache

    batch = len(rows)
    width = max(len(r) for r in rows)
    ids = torch.full((batch, width), pad_id, dtype=torch.long)
    mask = torch.zeros((batch, width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
    cache = DynamicCache(config=model.config)
    embeds = model.get_input_embeddings()(ids)
    if soft is not None:
        ones = torch.ones((batch, soft.tokens), dtype=torch.long)
        if soft.kind == "embeddings":
            embeds = torch.cat([soft.tensor.unsqueeze(0).expand(batch, -1, -1), embeds], dim=1)
            mask = torch.cat([ones, mask], dim=1)
        else:
            for layer, kv in enumerate(soft.tensor):
                cache.update(
                    kv[0].unsqueeze(0).expand(batch, -1, -1, -1).contiguous(),
                    kv[1].unsqueeze(0).expand(batch, -1, -1, -1).contiguous(),
                    layer,
                )
            mask = torch.cat([ones, mask], dim=1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    if soft is not None and soft.kind == "kv":
        positions = positions[:, soft.tokens :]
    out = model(
        inputs_embeds=embeds,
        attention_mask=mask,
        position_ids=positions,
        use_cache=True,
        logits_to_keep=keep,
        **{cache_arg(model): cache},
    )
    next_pos = mask.sum(-1)
    return out.logits, State(returned_cache(out), mask, next_pos)


def step(
    model: Any, state: State, tokens: torch.Tensor, mask: torch.Tensor | None = None, *, keep: int = 0
) -> torch.Tensor:
    """Feed ``tokens`` (rows x n) after each row's last position and return their logits.

    ``mask`` marks real tokens (zeros for left padding); default all real. ``keep``: only the
    last ``keep`` positions' logits (0: all).
    """
    if mask is None:
        mask = torch.ones(tokens.shape, dtype=torch.long)
    state.mask = torch.cat([state.mask, mask], dim=1)
    positions = state.next_pos.unsqueeze(1) + (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(
        input_ids=tokens,
        attention_mask=state.mask,
        position_ids=positions,
        use_cache=True,
        logits_to_keep=keep,
        **{cache_arg(model): state.cache},
    )
    state.cache = returned_cache(out)
    state.next_pos = state.next_pos + mask.sum(-1)
    logits: torch.Tensor = out.logits
    return logits


def expand(state: State, counts: list[int]) -> State:
    """Repeat each row of a prefilled batch ``counts[i]`` times (to score several completions)."""
    from transformers import DynamicCache

    index = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    cache = DynamicCache()
    for layer_idx, layer in enumerate(state.cache.layers):
        cache.update(layer.keys[index], layer.values[index], layer_idx)
    return State(cache, state.mask[index], state.next_pos[index])


@dataclass(slots=True)
class GenRow:
    """One sequence to generate and how."""

    ids: list[int]
    max_new: int
    temperature: float
    top_p: float
    generator: torch.Generator | None
    stop: tuple[str, ...]
    top_logprobs: int
    out: list[int] = field(default_factory=list)
    logprobs: list[tuple[int, float, list[tuple[int, float]]]] = field(default_factory=list)
    text: str = ""
    finish: str | None = None
    #: Called with each new piece of the row's text as it is decoded (streaming), or None.
    on_text: Callable[[str], None] | None = None
    #: What ``on_text`` raised (the consumer stopped reading): the row stopped there.
    failed: BaseException | None = None
    sent: str = ""


def generate(
    model: Any,
    tokenizer: Any,
    rows: list[GenRow],
    soft: Applied | None,
    pad_id: int,
    eos: set[int],
    prefixes: PrefixCache | None = None,
    soft_key: str = "",
) -> None:
    """Decode every row in place until each stops, hits ``max_new`` or a stop string."""
    logits, state = prefill(model, [r.ids for r in rows], soft, pad_id, prefixes=prefixes, soft_key=soft_key)
    last = logits[:, -1, :]
    for _ in range(max(r.max_new for r in rows)):
        chosen = []
        logp = torch.log_softmax(last.float(), dim=-1)
        for i, row in enumerate(rows):
            if row.finish is not None:
                chosen.append(pad_id)
                continue
            token = _pick(last[i], row)
            chosen.append(token)
            top = []
            if row.top_logprobs:
                values, indices = torch.topk(logp[i], row.top_logprobs)
                top = list(zip(indices.tolist(), values.tolist()))
            row.logprobs.append((token, float(logp[i, token]), top))
            if token in eos:
                row.finish = "stop"
                continue
            row.out.append(token)
            _check_stop(tokenizer, row)
            if row.finish is None and len(row.logprobs) >= row.max_new:
                row.finish = "length"
            if row.finish is None:
                _stream(tokenizer, row, _settled(tokenizer, row))
        if all(r.finish is not None for r in rows):
            break
        last = step(model, state, torch.tensor(chosen, dtype=torch.long).unsqueeze(1))[:, -1, :]
    for row in rows:
        if row.finish is None:
            row.finish = "length"
        if not row.text:
            row.text = tokenizer.decode(row.out, skip_special_tokens=True)
        _stream(tokenizer, row, row.text)


def _settled(tokenizer: Any, row: GenRow) -> str:
    """The row's text so far, minus what may still change: half a character, half a stop string."""
    text = str(tokenizer.decode(row.out, skip_special_tokens=True)).rstrip("\ufffd")
    hold = max((k for s in row.stop for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
    return text[: len(text) - hold]


def _stream(tokenizer: Any, row: GenRow, text: str) -> None:
    """Send what ``text`` adds to what the row has streamed; a raising callback stops the row."""
    if row.on_text is None or row.failed is not None:
        return
    if len(text) <= len(row.sent) or not text.startswith(row.sent):
        return
    piece, row.sent = text[len(row.sent) :], text
    try:
        row.on_text(piece)
    except BaseException as exc:  # noqa: BLE001 - the consumer left: stop this row only, raise it to its caller
        row.failed = exc
        row.finish = row.finish or "cancelled"


def _pick(logits: torch.Tensor, row: GenRow) -> int:
    if row.temperature <= 0 or row.generator is None:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / row.temperature, dim=-1)
    if row.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = sorted_probs.cumsum(-1) - sorted_probs < row.top_p
        sorted_probs = sorted_probs * keep
        return int(order[torch.multinomial(sorted_probs / sorted_probs.sum(), 1, generator=row.generator)])
    return int(torch.multinomial(probs, 1, generator=row.generator))


def _check_stop(tokenizer: Any, row: GenRow) -> None:
    if not row.stop:
        return
    text = tokenizer.decode(row.out, skip_special_tokens=True)
    cut = min((text.find(s) for s in row.stop if s in text), default=-1)
    if cut >= 0:
        row.text = text[:cut]
        row.finish = "stop"


def score(
    model: Any,
    prompts: list[list[int]],
    completions: list[list[list[int]]],
    soft: Applied | None,
    pad_id: int,
    prefixes: PrefixCache | None = None,
    soft_key: str = "",
) -> list[list[list[float]]]:
    """Token log-probabilities of each completion after its prompt.

    The prompts run once (one batched forward pass); their caches are then shared by all of
    their completions, which run together in a second pass (skipped when every completion is
    a single token).
    """
    logits, state = prefill(model, prompts, soft, pad_id, prefixes=prefixes, soft_key=soft_key)
    first = torch.log_softmax(logits[:, -1, :].float(), dim=-1)
    counts = [len(c) for c in completions]
    flat = [c for group in completions for c in group]
    owner = [i for i, group in enumerate(completions) for _ in group]
    width = max((len(c) for c in flat), default=0)
    rest = None
    if width > 1:
        state = expand(state, counts)
        tokens = torch.full((len(flat), width - 1), pad_id, dtype=torch.long)
        for r, comp in enumerate(flat):
            if len(comp) > 1:
                tokens[r, : len(comp) - 1] = torch.tensor(comp[:-1], dtype=torch.long)
        rest = torch.log_softmax(step(model, state, tokens).float(), dim=-1)
    result: list[list[list[float]]] = [[] for _ in completions]
    for r, comp in enumerate(flat):
        values = [float(first[owner[r], comp[0]])] if comp else []
        if len(comp) > 1:
            assert rest is not None  # a completion of two or more tokens made width > 1 above
            values.extend(float(rest[r, j, token]) for j, token in enumerate(comp[1:]))
        result[owner[r]].append(values)
    return result
