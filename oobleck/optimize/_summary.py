"""The compile summary: what a compile cost and what it won, in a few lines a person reads.

:class:`CompileSummary` is read from a compiled program's ``provenance`` (saved in its
artifact) and, right after a compile, from what only the live run knows: the split of tokens
into prompt and completion, the calls answered from the cache, and the wall time (none of
which an artifact keeps, so a rerun on the same cache writes the same bytes). ``oobleck
compile`` prints it; ``compiled.compile_summary()`` returns it; the HTML report shows the same
numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oobleck import _fmt
from oobleck.errors import ConfigError

if TYPE_CHECKING:
    from oobleck.lm.types import Usage
    from oobleck.module import Module

__all__ = ["CompileSummary", "before_after"]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def before_after(scores: Mapping[str, Any]) -> dict[str, Any]:
    """The start and winner scores a compile recorded, on the selection and confirming rows.

    Returns ``{"selection": (start, best) | None, "confirm": (start, best) | None, "winner":
    str | None}`` (scores in percent). A soft-prompt compile's initial and best valset scores
    count as the selection pair (of its first predictor with both).
    """
    out: dict[str, Any] = {"selection": None, "confirm": None, "winner": None}
    start, best = _num(scores.get("start_score")), _num(scores.get("best_score"))
    if start is not None and best is not None:
        out["selection"] = (start, best)
    elif isinstance(scores.get("predictors"), Mapping):  # a soft prompt: per predictor, 0..1 or percent
        for report in scores["predictors"].values():
            r = _mapping(report)
            a, b = _num(r.get("initial_score")), _num(r.get("best_score"))
            if a is not None and b is not None:
                out["selection"] = (a, b)
                break
    v = _mapping(scores.get("verdict"))
    if v.get("confirmed") and _num(v.get("start_score")) is not None and _num(v.get("best_score")) is not None:
        out["confirm"] = (float(v["start_score"]), float(v["best_score"]))
    winner = scores.get("winner", scores.get("best"))
    out["winner"] = None if winner is None else str(winner)
    return out


@dataclass(frozen=True, slots=True)
class CompileSummary:
    """A compile's cost and result, for a person (``str()``) or a program (:meth:`to_dict`).

    Attributes:
        optimizer: the optimizer's name.
        lm_calls: LM calls the compile takes, cache hits included (as provenance records them).
        tokens: their prompt plus completion tokens, cached ones included.
        usage: the live run's usage (calls sent vs cache hits, prompt vs completion tokens),
            None when read from an artifact.
        wall_s: the live run's wall time in seconds (this session), None from an artifact.
        provenance: the provenance it was read from.
    """

    optimizer: str
    lm_calls: int | None
    tokens: int | None
    usage: Usage | None
    wall_s: float | None
    provenance: Mapping[str, Any]

    @classmethod
    def from_provenance(
        cls, provenance: Mapping[str, Any], *, usage: Usage | None = None, wall_s: float | None = None
    ) -> CompileSummary:
        """Read a summary from a provenance record (plus what the live run knows, if given)."""
        calls, tokens = provenance.get("lm_calls"), provenance.get("tokens")
        return cls(
            optimizer=str(provenance.get("optimizer", "?")),
            lm_calls=calls if isinstance(calls, int) else None,
            tokens=tokens if isinstance(tokens, int) else None,
            usage=usage,
            wall_s=wall_s,
            provenance=provenance,
        )

    @classmethod
    def of(cls, program: Module) -> CompileSummary:
        """The summary of a compiled program (or of a loaded artifact's program).

        Raises:
            ConfigError: the program was not compiled (it has no provenance).
        """
        prov = getattr(program, "provenance", None)
        if not prov:
            raise ConfigError(
                f"this {type(program).__name__} carries no compile provenance: only a program returned by an "
                "optimizer's compile() (or loaded from its artifact) has a compile summary"
            )
        return cls.from_provenance(
            prov, usage=getattr(program, "compile_usage", None), wall_s=getattr(program, "compile_wall_s", None)
        )

    @property
    def scores(self) -> Mapping[str, Any]:
        """The ``scores`` the optimizer recorded (empty when it scores nothing)."""
        return _mapping(self.provenance.get("scores"))

    def cost_line(self) -> str:
        """LM calls, tokens and time on one line."""
        u = self.usage
        calls = f"{_fmt.count(self.lm_calls)} LM calls"
        if u is not None and u.cache_hits:
            calls += f" ({_fmt.count(u.calls)} sent, {_fmt.count(u.cache_hits)} from the cache)"
        if u is not None:
            tokens = f"{_fmt.count(u.prompt_tokens)} prompt + {_fmt.count(u.completion_tokens)} completion tokens"
            if u.cached_tokens:
                tokens += f" (+ {_fmt.count(u.cached_tokens)} from the cache)"
        else:
            tokens = f"{_fmt.count(self.tokens)} tokens (prompt + completion)"
        parts = [calls, tokens]
        if self.wall_s is not None:
            parts.append(f"{_fmt.seconds(self.wall_s)} wall time")
            if u is not None and u.latency_s:
                parts[-1] += f" (LM calls {_fmt.seconds(u.latency_s)}, summed over parallel calls)"
        return ", ".join(parts)

    def lines(self) -> list[str]:
        """The summary as lines of text."""
        out = [f"{self.optimizer}: {self.cost_line()}"]
        est = _mapping(self.provenance.get("estimate"))
        if est:
            out.append(
                f"planned: up to {_fmt.count(est.get('lm_calls'))} LM calls, "
                f"~{_fmt.count(est.get('prompt_tokens'))} prompt tokens"
            )
        if self.provenance.get("stopped_early"):
            out.append(f"stopped early at the budget ({self.provenance.get('stop_reason', 'reason not recorded')})")
        scores = self.scores
        pair = before_after(scores)
        kind = "member" if isinstance(scores.get("members"), list) else "candidate"
        winner = f" ({kind} {pair['winner']})" if pair["winner"] is not None else ""
        if pair["selection"] is not None:
            a, b = pair["selection"]
            out.append(f"score on the selection rows: start {_fmt.score(a)} -> winner {_fmt.score(b)}{winner}")
        if pair["confirm"] is not None:
            a, b = pair["confirm"]
            out.append(f"score on the confirming rows: start {_fmt.score(a)} -> winner {_fmt.score(b)}")
        sel = _mapping(scores.get("selection_verdict"))
        if sel:
            out.append(f"gain on the selection rows (they chose the winner, so it is optimistic): {_fmt.interval(sel)}")
        v = _mapping(scores.get("verdict"))
        if v.get("confirmed"):
            out.append(f"verdict on the confirming rows (never seen by the search): {_fmt.interval(v)}")
        elif v:
            out.append(f"verdict on the confirming rows: not confirmed ({v.get('reason', 'no reason recorded')})")
        if scores.get("returned"):
            out.append(f"returned: {scores['returned']}")
        if not scores or (pair["selection"] is None and not v):
            out.append(f"scores: {self.optimizer} scores no candidates (nothing to compare before and after)")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def to_dict(self) -> dict[str, Any]:
        """The summary's numbers as JSON data (raw, not rounded)."""
        u = self.usage
        pair = before_after(self.scores)
        return {
            "optimizer": self.optimizer,
            "lm_calls": self.lm_calls,
            "tokens": self.tokens,
            "calls_sent": None if u is None else u.calls,
            "cache_hits": None if u is None else u.cache_hits,
            "prompt_tokens": None if u is None else u.prompt_tokens,
            "completion_tokens": None if u is None else u.completion_tokens,
            "cached_tokens": None if u is None else u.cached_tokens,
            "wall_s": self.wall_s,
            "selection": None if pair["selection"] is None else list(pair["selection"]),
            "confirm": None if pair["confirm"] is None else list(pair["confirm"]),
            "winner": pair["winner"],
            "selection_verdict": self.scores.get("selection_verdict"),
            "verdict": self.scores.get("verdict"),
        }


#: Columns of the candidates table, in order, and the heading each is shown under.
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "id"),
    ("name", "member"),
    ("optimizer", "optimizer"),
    ("kind", "kind"),
    ("parent", "parent"),
    ("step", "step"),
    ("format", "format"),
    ("demos", "demos"),
    ("score", "score"),
    ("selection_score", "score"),
    ("start_score", "start"),
    ("errors", "errors"),
    ("budget", "budget"),
    ("calls", "calls"),
    ("cache_hits", "cache hits"),
    ("dropped", "dropped"),
    ("stopped_early", "stopped early"),
)


def candidates_table(scores: Mapping[str, Any]) -> tuple[list[str], list[list[Any]], int | None]:
    """The candidates (or Auto's members) a compile scored, as a table of raw values.

    Returns ``(headings, rows, chosen)``: only the columns some candidate has (scalars only),
    and the index of the chosen row (None when none is marked). Empty when nothing was recorded.
    """
    items = scores.get("candidates")
    chosen_key = scores.get("best")
    if not isinstance(items, list) and isinstance(scores.get("members"), list):
        items, chosen_key = scores["members"], scores.get("winner")
    if not isinstance(items, list):
        return [], [], None
    records = [c for c in items if isinstance(c, Mapping)]
    present = [
        (key, head)
        for key, head in _COLUMNS
        if any(key in c and not isinstance(c[key], (Mapping, list)) for c in records)
    ]
    columns: list[tuple[str, str]] = []
    for key, head in present:  # score and selection_score share one column
        if head not in (h for _, h in columns):
            columns.append((key, head))
    rows = [
        [c.get(key, c.get("selection_score") if head == "score" else None) for key, head in columns] for c in records
    ]
    chosen = next(
        (i for i, c in enumerate(records) if chosen_key is not None and c.get("id", c.get("name")) == chosen_key),
        None,
    )
    return [h for _, h in columns], rows, chosen
