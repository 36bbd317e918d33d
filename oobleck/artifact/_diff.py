"""What changed between two artifacts: predictors, instructions, demos, format, provenance."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from oobleck.artifact._schema import ArtifactDoc, PredictorRecord

__all__ = ["Change", "diff_docs", "format_changes"]


@dataclass(frozen=True, slots=True)
class Change:
    """One difference.

    Attributes:
        predictor: the predictor it concerns (None for the whole artifact).
        kind: ``added``, ``removed``, ``instructions``, ``demo_added``, ``demo_removed``,
            ``demos_reordered``, ``signature``, ``adapter``, ``config``, ``max_retries``,
            ``lm``, ``mode``, ``soft_prompt``, ``extra`` (other saved predictor state),
            ``program`` (the module graph and the modules' saved state), ``file`` (a side file
            added, removed or with other content), ``provenance``.
        before: the old value (JSON data, None when added).
        after: the new value (None when removed).
    """

    predictor: str | None
    kind: str
    before: Any = None
    after: Any = None

    def to_dict(self) -> dict[str, Any]:
        """JSON data."""
        return {"predictor": self.predictor, "kind": self.kind, "before": self.before, "after": self.after}


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _predictor_changes(name: str, a: PredictorRecord, b: PredictorRecord) -> list[Change]:
    out: list[Change] = []
    if a.signature.instructions != b.signature.instructions:
        out.append(Change(name, "instructions", a.signature.instructions, b.signature.instructions))
    fields_a = [f.model_dump(by_alias=True, exclude={"schema_"}) for f in a.signature.fields]
    fields_b = [f.model_dump(by_alias=True, exclude={"schema_"}) for f in b.signature.fields]
    if fields_a != fields_b:
        out.append(Change(name, "signature", fields_a, fields_b))
    keys_a, keys_b = [_key(d) for d in a.demos], [_key(d) for d in b.demos]
    out += [Change(name, "demo_removed", d, None) for d, k in zip(a.demos, keys_a) if k not in keys_b]
    out += [Change(name, "demo_added", None, d) for d, k in zip(b.demos, keys_b) if k not in keys_a]
    if sorted(keys_a) == sorted(keys_b) and keys_a != keys_b:
        out.append(Change(name, "demos_reordered", len(keys_a), len(keys_b)))
    for kind in ("adapter", "config", "max_retries", "lm"):
        before, after = getattr(a, kind), getattr(b, kind)
        before = before.model_dump() if hasattr(before, "model_dump") else before
        after = after.model_dump() if hasattr(after, "model_dump") else after
        if before != after:
            out.append(Change(name, kind, before, after))
    extra_a, extra_b = a.extra or {}, b.extra or {}
    if extra_a.get("mode", "generate") != extra_b.get("mode", "generate"):
        out.append(Change(name, "mode", extra_a.get("mode", "generate"), extra_b.get("mode", "generate")))
    soft_a, soft_b = _soft(extra_a.get("soft_prompt")), _soft(extra_b.get("soft_prompt"))
    if soft_a != soft_b:
        out.append(Change(name, "soft_prompt", soft_a, soft_b))
    for key in sorted((set(extra_a) | set(extra_b)) - {"mode", "soft_prompt"}):
        if _key(extra_a.get(key)) != _key(extra_b.get(key)):
            out.append(Change(name, "extra", {key: extra_a.get(key)}, {key: extra_b.get(key)}))
    return out


def _file_changes(a: ArtifactDoc, b: ArtifactDoc) -> list[Change]:
    """Side files by name: added, removed, or with other content (sha256 and size)."""
    fa = {f.name: {"sha256": f.sha256[:16], "size": f.size} for f in a.files}
    fb = {f.name: {"sha256": f.sha256[:16], "size": f.size} for f in b.files}
    out: list[Change] = []
    for name in sorted(set(fa) | set(fb)):
        before, after = fa.get(name), fb.get(name)
        if before != after:
            out.append(Change(None, "file", {name: before}, {name: after}))
    return out


def _soft(described: Any) -> Any:
    """What a reader needs to see of a soft prompt: method, size, init, identity, norm."""
    if not isinstance(described, Mapping):
        return described
    config: Mapping[str, Any] = described["config"] if isinstance(described.get("config"), Mapping) else {}
    shown = {k: described.get(k) for k in ("method", "num_virtual_tokens", "covers", "norm")}
    shown["sha256"] = str(described.get("sha256", ""))[:16]
    if config.get("init"):
        shown["init"] = config["init"]
    return shown


def diff_docs(a: ArtifactDoc, b: ArtifactDoc) -> list[Change]:
    """Every difference between artifact ``a`` (before) and ``b`` (after), in a stable order."""
    changes: list[Change] = []
    pa: Mapping[str, PredictorRecord] = {p.name: p for p in a.predictors}
    pb: Mapping[str, PredictorRecord] = {p.name: p for p in b.predictors}
    for name in pa:
        if name not in pb:
            changes.append(Change(name, "removed", str(_sig(pa[name])), None))
    for name in pb:
        if name not in pa:
            changes.append(Change(name, "added", None, str(_sig(pb[name]))))
        else:
            changes += _predictor_changes(name, pa[name], pb[name])
    ga, gb = a.model_dump(by_alias=True)["program"], b.model_dump(by_alias=True)["program"]
    if ga != gb:
        changes.append(Change(None, "program", ga, gb))
    changes += _file_changes(a, b)
    for key in sorted(set(a.provenance) | set(b.provenance)):
        if a.provenance.get(key) != b.provenance.get(key):
            changes.append(Change(None, "provenance", {key: a.provenance.get(key)}, {key: b.provenance.get(key)}))
    return changes


def _sig(p: PredictorRecord) -> str:
    ins = ", ".join(f.name for f in p.signature.fields if f.kind == "input")
    outs = ", ".join(f.name for f in p.signature.fields if f.kind == "output")
    return f"{ins} -> {outs}"


def _short(value: Any, width: int = 160) -> str:
    text = value if isinstance(value, str) else _key(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 1] + "…"


def word_diff(before: str, after: str) -> str:
    """``after`` with the words it lost as ``[-...-]`` and the words it gained as ``{+...+}``.

    Example:
        >>> word_diff("Classify the review.", "Classify the movie review carefully.")
        'Classify the [-review.-] {+movie review carefully.+}'
    """
    a, b = before.split(), after.split()
    out: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(" ".join(a[i1:i2]))
            continue
        if op in ("delete", "replace"):
            out.append("[-" + " ".join(a[i1:i2]) + "-]")
        if op in ("insert", "replace"):
            out.append("{+" + " ".join(b[j1:j2]) + "+}")
    return " ".join(out)


def format_changes(changes: list[Change], *, before: str = "a", after: str = "b") -> str:
    """A readable, diff-like report (``-`` before, ``+`` after)."""
    if not changes:
        return "no differences"
    lines: list[str] = []
    current: object = object()
    for c in changes:
        if c.predictor != current:
            current = c.predictor
            lines.append(f"== {'artifact' if c.predictor is None else 'predictor ' + c.predictor} ==")
        if c.kind == "instructions":
            lines.append("instructions:")
            diff = difflib.unified_diff(
                str(c.before).splitlines(), str(c.after).splitlines(), before, after, lineterm="", n=1
            )
            lines += ["  " + d for d in list(diff)[2:]]
            lines.append("  word by word: " + word_diff(str(c.before), str(c.after)))
        elif c.kind == "demo_added":
            lines.append(f"+ demo {_short(c.after)}")
        elif c.kind == "demo_removed":
            lines.append(f"- demo {_short(c.before)}")
        elif c.kind == "added":
            lines.append(f"+ predictor ({c.after})")
        elif c.kind == "removed":
            lines.append(f"- predictor ({c.before})")
        elif c.kind == "demos_reordered":
            lines.append("~ demos reordered")
        else:
            lines.append(f"{c.kind}:")
            lines.append(f"  - {_short(c.before)}")
            lines.append(f"  + {_short(c.after)}")
    return "\n".join(lines)
