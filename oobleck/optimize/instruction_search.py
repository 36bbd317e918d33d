"""InstructionSearch: coordinate ascent over each predictor's instruction (as COPRO / OPRO).

For ``depth`` rounds, one predictor at a time, the grounded proposer writes ``breadth`` new
instructions for it (it sees the data summary, the program, a few bootstrapped demos, the
current instruction, a style tip and every instruction tried so far with its score); each is
scored on the valset with paired racing against the best program so far, and the best one
becomes that predictor's instruction when it beats the incumbent. Demos are left as they are.

Optionally, ``formats=`` first tries the named prompt formats (see
:mod:`oobleck.adapters.template`) for the whole program, so the form is searched as well as the
words.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from oobleck._estimate import (
    CostEstimate,
    Expected,
    calls_per_run,
    run_shape,
    start_demos,
    tokens_per_run,
)
from oobleck.errors import ConfigError
from oobleck.example import Example
from oobleck.lm.base import LM
from oobleck.module import Module
from oobleck.optimize._base import CompileRun
from oobleck.optimize._instructions import InstructionSearchBase, Session, with_instruction
from oobleck.optimize._search import SearchKwargs

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["InstructionSearch"]

log = logging.getLogger("oobleck.optimize")


class InstructionSearch(InstructionSearchBase):
    """Coordinate ascent over instructions, one predictor at a time, history-aware.

    Args:
        metric: ``fn(example, prediction, trace=None) -> float | bool``.
        breadth: new instructions proposed per predictor per round.
        depth: rounds over all predictors.
        prompt_lm: the LM that writes instructions (default: the task LM).
        grounded_fallback: when the LM writes no usable instruction, score a variant built from
            the signature instead (its answer choices, fields and their descriptions).
        formats: prompt format names to try first (see :mod:`oobleck.adapters.template`);
            None searches instructions only.
        n_demos: bootstrapped demos shown to the proposer per predictor.
        **options: the search options (``num_threads``, ``max_errors``, ``racing``,
            ``require_significant``, ``prompt_tolerance``, ``val_fraction``, ``confirm_fraction``,
            ``max_lm_calls``, ``max_tokens``; see :class:`~oobleck.optimize._search.SearchOptions`).
            Candidates are scored on the selection rows; ``confirm_fraction`` of the scoring rows
            (at least 10; none with fewer than 20) is held out to state the winner's gain on.

    Example:
        >>> from oobleck import Example, FakeLM, Predict
        >>> from oobleck.metrics import exact_match
        >>> rows = [Example(q=str(i), a="0").with_inputs("q") for i in range(6)]
        >>> lm = FakeLM(lambda r: {"instruction": "Answer 0.", "summary": "digits", "a": "0"})
        >>> best = InstructionSearch(exact_match, breadth=2, depth=1).compile(
        ...     Predict("q -> a", lm=lm), trainset=rows[:3], valset=rows[3:])
        >>> best.provenance["scores"]["best_score"]
        100.0
    """

    cli_name = "instructions"

    def __init__(
        self,
        metric: Callable[..., Any],
        *,
        breadth: int = 4,
        depth: int = 2,
        prompt_lm: LM | None = None,
        grounded_fallback: bool = True,
        formats: Sequence[str] | None = None,
        n_demos: int = 3,
        **options: Unpack[SearchKwargs],
    ) -> None:
        super().__init__(
            metric,
            prompt_lm=prompt_lm,
            grounded_fallback=grounded_fallback,
            formats=formats,
            n_demos=n_demos,
            **options,
        )
        if breadth < 1 or depth < 1:
            raise ConfigError(f"breadth and depth must be >= 1, got breadth={breadth}, depth={depth}")
        self.breadth = breadth
        self.depth = depth

    def _settings(self) -> dict[str, Any]:
        return {**self._instruction_settings(), "breadth": self.breadth, "depth": self.depth}

    def _estimate(self, program: Module, trainset: list[Example], valset: list[Example] | None) -> CostEstimate:
        n_train, n_val = self._val_size(trainset, valset)
        first = trainset[0] if trainset else None
        per_run = calls_per_run(program, first)
        n_pred = len(program.named_predictors())
        proposals = self.depth * self.breadth * n_pred
        boot_runs = n_train if self.n_demos else 0
        val_runs = n_val * (1 + proposals + len(self.formats))
        estimate = CostEstimate(
            program_runs=boot_runs + val_runs,
            lm_calls=(boot_runs + val_runs) * per_run + proposals + 1,
            min_lm_calls=(min(self.n_demos, n_train) + n_val) * per_run + 1,
            prompt_tokens=(boot_runs + val_runs) * tokens_per_run(program, first),
            breakdown={"bootstrap": boot_runs, "validation": val_runs, "proposer_calls": proposals + 1},
        )
        expected = Expected(run_shape(program, trainset))
        self._expect_grounding(expected, n_train)
        expected.runs(val_runs, start_demos(program), prompts=1 + proposals + len(self.formats))  # the start's demos
        expected.proposer_calls(proposals, self.proposer.n_demos + self.depth)
        return self._plus_confirmation(
            estimate, program, trainset, valset, expected=expected, best_demos=start_demos(program)
        )

    def _compile(
        self, program: Module, trainset: list[Example], valset: list[Example] | None, run: CompileRun
    ) -> Module:
        def steps(s: Session) -> None:
            s.score_start()
            best = s.try_formats()
            for step in range(self.depth):
                for name, _ in program.named_predictors():
                    best = self._coordinate(s, best, name, step)

        return self._search(program, trainset, valset, run, steps)[0]

    def _coordinate(self, s: Session, best: str, name: str, step: int) -> str:
        """Propose ``breadth`` instructions for ``name`` on top of ``best``; return the new best key."""
        parent = s.programs[best]
        for k in range(self.breadth):
            rng = random.Random(f"oobleck-propose:{s.seed}:{step}:{name}:{k}")
            text = s.propose(parent, name, rng=rng, sample=step * self.breadth + k, tag=f"{step}:{name}:{k}")
            if not text:
                continue
            s.add(with_instruction(parent, name, text), parent=best, step=step + 1, kind="proposal", predictor=name)
        return s.incumbent_or(best)
