"""The training loop shared by every soft-prompt method: PEFT does the method, this does the run.

A run wraps the (frozen) model of a TransformersLM in a PEFT prompt-learning model, trains the
virtual tokens on padded batches of (prompt, target) rows with AdamW, and every ``eval_every``
steps turns the current vectors into a :class:`~oobleck.lm.soft_prompt.SoftPrompt` and scores
the program with it on the valset (the metric chooses the result, not the loss). Batches are
drawn from ``random.Random(seed)`` and torch's RNG is forked and seeded, so a run is
reproducible; with a checkpoint path the trainable state, the optimizer state, the batch order,
the best prompt so far and the history are saved after every step, and a run with the same
settings resumes from there (given more ``steps``, it continues the same run).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from oobleck import _progress
from oobleck._files import atomic_write
from oobleck.errors import ConfigError, OobleckError
from oobleck.lm import _hf_runtime as rt
from oobleck.lm.soft_prompt import SoftPrompt
from oobleck.lm.transformers import TransformersLM
from oobleck.soft._data import Cover, Row

log = logging.getLogger("oobleck.soft")

_STATE = "state."  # prefix of the trainable-state tensors inside a soft prompt's safetensors


@dataclass(slots=True)
class Plan:
    """What one training run does (JSON-able, part of the checkpoint's identity)."""

    method: str
    steps: int
    max_time_s: float | None
    batch_size: int
    lr: float
    eval_every: int
    seed: int
    config: dict[str, Any]


@dataclass(slots=True)
class Outcome:
    """What a run produced: the chosen soft prompt and how it got there."""

    best: SoftPrompt
    best_score: float
    best_step: int
    initial_score: float
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    history: list[tuple[int, float]] = field(default_factory=list)
    trainable_params: int = 0
    initial_sha256: str = ""
    planned_steps: int = 0
    stopped_by_time: bool = False


@dataclass(slots=True)
class TrainState:
    """Where a run is: what a checkpoint saves after every step and a resumed run starts from.

    Attributes:
        rng: draws the batch order (seeded from the plan; its state is saved).
        step: optimizer steps taken.
        seconds: training time so far, across resumed sessions.
        losses: the loss of each step.
        history: ``(step, score)`` of each evaluation, the start (step 0) first.
        best: the best soft prompt so far (None only before the start is scored).
        best_score: its score.
        best_step: the step it was taken at.
        initial: the score of the starting prompt.
        order: the rest of the current pass over the rows (popped from the end).
    """

    rng: random.Random
    step: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    history: list[tuple[int, float]] = field(default_factory=list)
    best: SoftPrompt | None = None
    best_score: float = float("-inf")
    best_step: int = 0
    initial: float = float("nan")
    order: list[int] = field(default_factory=list)

    def consider(self, candidate: SoftPrompt, value: float) -> None:
        """Record an evaluation at the current step; keep ``candidate`` if it beats the best."""
        self.history.append((self.step, value))
        if value > self.best_score:
            self.best, self.best_score, self.best_step = candidate, value, self.step


def peft_config(method: str, settings: dict[str, Any], lm: TransformersLM) -> Any:
    """The PEFT config object of ``method`` built from JSON ``settings``."""
    import peft

    common: dict[str, Any] = {
        "task_type": peft.TaskType.CAUSAL_LM,
        "num_virtual_tokens": int(settings["num_virtual_tokens"]),
    }
    if method == "prompt_tuning":
        init = settings.get("init", "random")
        kwargs: dict[str, Any] = {
            "prompt_tuning_init": {"random": "RANDOM", "vocab": "SAMPLE_VOCAB", "text": "TEXT"}[init]
        }
        if init == "text":
            kwargs.update(prompt_tuning_init_text=settings["init_text"], tokenizer_name_or_path=str(lm.model_dir))
        return peft.PromptTuningConfig(**common, **kwargs)
    if method == "prefix_tuning":
        return peft.PrefixTuningConfig(
            **common,
            prefix_projection=bool(settings.get("projection", False)),
            encoder_hidden_size=int(settings.get("encoder_hidden_size", 128)),
        )
    if method == "p_tuning":
        return peft.PromptEncoderConfig(
            **common,
            encoder_reparameterization_type=settings.get("encoder", "MLP"),
            encoder_hidden_size=int(settings.get("encoder_hidden_size", 128)),
        )
    if method == "multitask_prompt_tuning":
        kwargs = {"num_tasks": int(settings.get("num_tasks", 1)), "num_ranks": int(settings.get("num_ranks", 1))}
        if settings.get("source"):
            kwargs.update(
                prompt_tuning_init="EXACT_SOURCE_TASK",
                prompt_tuning_init_state_dict_path=settings["source"],
                prompt_tuning_init_task=int(settings.get("source_task", 0)),
            )
        else:
            kwargs["prompt_tuning_init"] = "RANDOM"
        return peft.MultitaskPromptTuningConfig(**common, **kwargs)
    raise ConfigError(f"unknown soft-prompt method {method!r}")


def build(lm: TransformersLM, plan: Plan) -> Any:
    """A PEFT model around the LM's frozen model, initialised from the plan's seed."""
    import peft

    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # transformers deprecates an attribute PEFT still reads; nothing for a user to act on
        warnings.simplefilter("ignore", FutureWarning)
        torch.manual_seed(plan.seed)
        model = peft.get_peft_model(lm.model, peft_config(plan.method, plan.config, lm))
    return model


def materialize(peft_model: Any, plan: Plan, lm: TransformersLM, cover: Cover | None, task: int = 0) -> SoftPrompt:
    """The current vectors as a SoftPrompt: the tensor to apply plus the trainable state."""
    from peft import get_peft_model_state_dict

    was_training = peft_model.training
    peft_model.eval()
    with torch.no_grad():
        if plan.method == "prefix_tuning":
            cache = peft_model.get_prompt(batch_size=1)
            layers = [torch.stack([layer.keys[0], layer.values[0]]) for layer in cache.layers]
            applied = {"prefix": torch.stack(layers)}
            kind = "kv"
        else:
            task_ids = torch.tensor([task]) if plan.method == "multitask_prompt_tuning" else None
            prompt = peft_model.get_prompt(batch_size=1, task_ids=task_ids)[0]
            applied = {"prompt": prompt}
            kind = "embeddings"
        state = {_STATE + k: v for k, v in get_peft_model_state_dict(peft_model).items()}
    if was_training:
        peft_model.train()
    tensor = next(iter(applied.values()))
    # No safetensors metadata: its header map is written in hash order, which would make the
    # bytes (and so the sha256 that names the soft prompt) differ between identical saves.
    data = rt.tensors_bytes({**applied, **state})
    return SoftPrompt.from_bytes(
        data,
        method=plan.method,
        kind=kind,
        num_virtual_tokens=int(plan.config["num_virtual_tokens"]),
        base_model=lm.identity,
        covers=cover.count if cover else 0,
        covers_sha256=cover.sha256 if cover else None,
        config=dict(plan.config),
        norm=round(float(tensor.float().norm()), 6),
    )


def trainable_state(prompt: SoftPrompt) -> dict[str, torch.Tensor]:
    """The PEFT trainable state saved inside a soft prompt (to train it further)."""
    tensors = rt.read_tensors(prompt.data)
    return {k[len(_STATE) :]: v for k, v in tensors.items() if k.startswith(_STATE)}


def _load_start(peft_model: Any, start: SoftPrompt, lm: TransformersLM, load: Callable[..., Any]) -> None:
    """Put the trainable state saved in ``start`` into ``peft_model`` (training it further).

    Raises:
        ConfigError: ``start`` was trained on another model, or its tensors do not fit this one.
    """
    digest = start.base_model.get("digest")
    mine = lm.identity
    if digest not in (None, mine["digest"]):
        raise ConfigError(
            f"cannot train {start!r} further: it was trained on model {start.base_model.get('model')!r} "
            f"(digest {digest}), not on this one ({mine['model']}, {mine['digest']}); set "
            "predictor.soft_prompt = None to train a new one"
        )
    try:
        state = trainable_state(start)
        if not state:
            raise ValueError("it holds no trainable state")
        load(peft_model, state)
    except Exception as exc:  # noqa: BLE001 - safetensors and torch raise their own error types
        raise ConfigError(
            f"cannot train {start!r} further: its tensors do not fit this model and method ({exc}); set "
            "predictor.soft_prompt = None to train a new one"
        ) from None


def train(
    lm: TransformersLM,
    plan: Plan,
    rows: Sequence[Row],
    *,
    score: Callable[[SoftPrompt], float],
    cover: Cover | None,
    start: SoftPrompt | None = None,
    checkpoint: Path | None = None,
    fingerprint: str = "",
    progress: bool = True,
    materialize_task: int = 0,
    restart_stale: bool = False,
    label: str = "",
) -> Outcome:
    """Train one soft prompt on ``rows`` and return the best one by ``score`` (higher is better).

    With a ``checkpoint`` path the run is saved after every step (a crash repeats at most the
    step it interrupted) and resumed from there. A checkpoint of another run raises ConfigError, unless ``restart_stale`` (a later stage whose
    input changed, e.g. an adaptation whose shared prompt was trained further): then it starts over.
    """
    from peft import set_peft_model_state_dict

    if not rows:
        raise ConfigError("soft-prompt training needs at least one training row")
    peft_model = build(lm, plan)
    if start is not None:
        _load_start(peft_model, start, lm, set_peft_model_state_dict)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in params)
    optimizer = torch.optim.AdamW(params, lr=plan.lr, weight_decay=0.0)
    initial_sha = ""

    def in_eval_mode(candidate: SoftPrompt) -> float:
        # the valset runs on the same (shared) model: in eval mode, or its dropout would be on
        was_training = peft_model.training
        peft_model.eval()
        try:
            return score(candidate)
        finally:
            peft_model.train(was_training)

    state = _resume(checkpoint, fingerprint, peft_model, optimizer, restart_stale)
    if state is None:
        state = TrainState(rng=random.Random(plan.seed))
        state.best = materialize(peft_model, plan, lm, cover, materialize_task)
        state.initial = state.best_score = in_eval_mode(state.best)
        state.history.append((0, state.best_score))
        initial_sha = state.best.sha256
    timed_out = False
    started = time.perf_counter() - state.seconds

    def save() -> None:
        state.seconds = time.perf_counter() - started
        _save(checkpoint, fingerprint, peft_model, optimizer, state)

    def evaluate() -> None:
        candidate = materialize(peft_model, plan, lm, cover, materialize_task)
        if math.isfinite(candidate.norm):
            # the valset runs on the same (shared) model: in eval mode, or its dropout would be on
            state.consider(candidate, in_eval_mode(candidate))
        else:  # training diverged (NaN/inf vectors): no backend applies them; never the best
            log.warning("%s: the vectors became NaN or infinite at step %d (lr too high?)", plan.method, state.step)
            state.consider(candidate, float("nan"))
        save()

    pad = lm._pad_id()
    peft_model.train()
    name = label or plan.method
    with _progress.counter(plan.steps, name, enabled=progress, unit="step", initial=state.step) as bar:
        try:
            while state.step < plan.steps:
                if plan.max_time_s is not None and time.perf_counter() - started >= plan.max_time_s:
                    timed_out = True
                    log.warning(
                        "%s: time budget of %.0f s reached after %d steps", plan.method, plan.max_time_s, state.step
                    )
                    break
                batch = []
                for _ in range(min(plan.batch_size, len(rows))):
                    if not state.order:
                        state.order = list(range(len(rows)))
                        state.rng.shuffle(state.order)
                    batch.append(rows[state.order.pop()])
                # A model with dropout draws from torch's RNG: seeded per step, a run (and one
                # resumed from its checkpoint) repeats exactly, and the caller's RNG is left alone.
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(_step_seed(plan.seed, state.step))
                    loss = _loss(peft_model, batch, pad, plan.method)
                    optimizer.zero_grad()
                    torch.autograd.backward(loss)
                optimizer.step()
                state.step += 1
                state.losses.append(round(loss.item(), 6))
                save()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{state.losses[-1]:.3f}", best=f"{state.best_score:.3f}")
                if state.step % plan.eval_every == 0 or state.step == plan.steps:
                    evaluate()
        finally:
            peft_model.eval()
    if state.history[-1][0] != state.step:  # stopped by time between evaluations, or resumed from a step not yet scored
        evaluate()
    assert state.best is not None
    return Outcome(
        state.best,
        state.best_score,
        state.best_step,
        state.initial,
        state.step,
        time.perf_counter() - started,
        state.losses,
        state.history,
        n_params,
        initial_sha,
        plan.steps,
        timed_out,
    )


def _step_seed(seed: int, step: int) -> int:
    digest = hashlib.sha256(f"{seed}:{step}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _loss(peft_model: Any, batch: list[Row], pad: int, method: str) -> torch.Tensor:
    width = max(len(r.prompt) + len(r.target) for r in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, r in enumerate(batch):
        seq = r.prompt + r.target
        ids[i, : len(seq)] = torch.tensor(seq)
        labels[i, len(r.prompt) : len(seq)] = torch.tensor(r.target)
        mask[i, : len(seq)] = 1
    kwargs: dict[str, Any] = {}
    if method == "multitask_prompt_tuning":
        kwargs["task_ids"] = torch.tensor([r.task for r in batch])
    with warnings.catch_warnings():
        # PEFT's prefix tuning passes the cache under its pre-5.x name; nothing for a user to act on
        warnings.simplefilter("ignore", FutureWarning)
        out = peft_model(input_ids=ids, attention_mask=mask, labels=labels, **kwargs)
    loss: torch.Tensor = out.loss
    return loss


# ---- checkpoints: JSON for the run state, safetensors for tensors (never pickles) ----


def _save(path: Path | None, fingerprint: str, peft_model: Any, optimizer: Any, run: TrainState) -> None:
    """Write the run state: tensors in files named by their content, then the JSON naming them.

    A crash at any point leaves the previous JSON and the files it names intact; files it no
    longer names are removed once the new JSON is in place.
    """
    from peft import get_peft_model_state_dict

    best = run.best
    if path is None or best is None:
        return
    rng_state = run.rng.getstate()
    opt = optimizer.state_dict()
    tensors = {"model." + k: v for k, v in get_peft_model_state_dict(peft_model).items()}
    for index, values in opt["state"].items():
        for key, value in values.items():
            tensors[f"opt.{index}.{key}"] = value if isinstance(value, torch.Tensor) else torch.tensor(value)
    blob = rt.tensors_bytes(tensors)
    digest = hashlib.sha256(blob).hexdigest()
    files = {
        "tensors_file": f"{path.stem}.{digest[:16]}.tensors.safetensors",
        "best_file": f"{path.stem}.{best.sha256[:16]}.best.safetensors",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    for name, data in ((files["tensors_file"], blob), (files["best_file"], best.data)):
        if not (path.parent / name).exists():
            atomic_write(path.parent / name, data)
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = {}
    state = {
        **files,
        "fingerprint": fingerprint,
        "step": run.step,
        "seconds": run.seconds,
        "losses": run.losses,
        "history": run.history,
        "best": best.describe(),
        "best_score": run.best_score,
        "best_step": run.best_step,
        "initial": run.initial,
        "rng": [rng_state[0], list(rng_state[1]), rng_state[2]],
        "order": run.order,
        "param_groups": opt["param_groups"],
        "tensors_sha256": digest,
    }
    atomic_write(path, json.dumps(state, sort_keys=True).encode())
    for key, name in files.items():
        old = previous.get(key) if isinstance(previous, dict) else None
        if isinstance(old, str) and old != name and Path(old).name == old:
            (path.parent / old).unlink(missing_ok=True)


def _resume(
    path: Path | None, fingerprint: str, peft_model: Any, optimizer: Any, restart_stale: bool
) -> TrainState | None:
    """The state saved by :func:`_save` (model and optimizer tensors loaded), or None to start afresh."""
    from peft import set_peft_model_state_dict

    if path is None or not path.exists():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        blob = (path.parent / Path(state["tensors_file"]).name).read_bytes()
        best_data = (path.parent / Path(state["best_file"]).name).read_bytes()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read soft-prompt checkpoint {path} ({exc}); delete it to start over") from None
    if state.get("fingerprint") != fingerprint:
        if restart_stale:
            log.info("checkpoint %s is from an earlier input to this stage; starting the stage over", path)
            return None
        raise ConfigError(
            f"checkpoint {path} belongs to another training run (other settings, seed or data); "
            "delete it or choose another path"
        )
    if hashlib.sha256(blob).hexdigest() != state.get("tensors_sha256"):
        raise ConfigError(f"checkpoint {path}: its tensor file was changed; delete the checkpoint to start over")
    try:
        tensors = rt.read_tensors(blob)
        set_peft_model_state_dict(peft_model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        opt_state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith("opt."):
                _, index, name = key.split(".", 2)
                opt_state.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
        best = SoftPrompt.from_description(state["best"], best_data)
        rng = state["rng"]
        generator = random.Random()
        # a damaged state fails here, not mid-run
        generator.setstate((int(rng[0]), tuple(int(x) for x in rng[1]), rng[2]))
        resumed = TrainState(
            rng=generator,
            step=int(state["step"]),
            seconds=float(state["seconds"]),
            losses=[float(x) for x in state["losses"]],
            history=[(int(s), float(v)) for s, v in state["history"]],
            best=best,
            best_score=float(state["best_score"]),
            best_step=int(state["best_step"]),
            initial=float(state["initial"]),
            order=[int(i) for i in state["order"]],
        )
    except (KeyError, TypeError, ValueError, RuntimeError, OobleckError) as exc:
        raise ConfigError(f"soft-prompt checkpoint {path} is damaged ({exc}); delete it to start over") from None
    log.info("resuming soft-prompt training from %s at step %d", path, resumed.step)
    return resumed
