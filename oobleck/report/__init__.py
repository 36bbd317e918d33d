"""The compile report: one self-contained HTML page a person reads (``oobleck report``).

Before and after with the paired interval and the verdict, the cost (LM calls, tokens, time),
a score-versus-LM-calls plot, the candidates table and the final prompt of each predictor,
from an artifact (any kind: several predictors, a soft prompt, or none of a compile's
provenance, which the page then says) or from a program a compile just returned (which adds
what only the live run knows: the token split and the wall time). Inline CSS and SVG; no
script and no external file. Every text from the artifact is escaped.

Example:
    >>> from oobleck import FakeLM, Predict
    >>> html = render_report(Predict("question -> answer", lm=FakeLM(["x"])))
    >>> "no compile provenance" in html and "<script" not in html
    True
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oobleck.report._page import PredictorView, ReportData, page

if TYPE_CHECKING:
    from oobleck.artifact import Artifact
    from oobleck.module import Module
    from oobleck.predict import Predict

__all__ = ["render_report", "write_report"]


def _view(name: str, p: Predict, messages: list[Any], lm: Any, reason: str | None) -> PredictorView:
    adapter = p.resolve_adapter()
    shown = (
        f"auto (chosen for the LM in use; {adapter.name} v{adapter.version} without one)"
        if p.adapter_is_default()
        else f"{adapter.name} v{adapter.version}"
    )
    soft = getattr(p, "soft_prompt", None)
    return PredictorView(
        name=name,
        signature=str(p.signature),
        adapter=shown,
        adapter_reason=reason,
        demos=len(p.demos),
        messages=[(m.role, m.content) for m in messages],
        soft_prompt=None if soft is None else soft.describe(),
        lm=lm,
    )


def _from_artifact(art: Artifact, title: str) -> ReportData:
    from oobleck.optimize._summary import CompileSummary

    prov = dict(art.provenance)
    views = [
        _view(n, p, list(art.templates[n]), art.lm_identities[n], art.adapter_reasons[n])
        for n, p in art.predictors.items()
    ]
    return ReportData(
        title=title,
        program=art.class_path or type(art.program).__name__,
        oobleck_version=art.oobleck_version,
        provenance=prov,
        predictors=views,
        summary=CompileSummary.from_provenance(prov) if prov else None,
    )


def _from_program(program: Module, title: str) -> ReportData:
    from oobleck._version import __version__
    from oobleck.optimize._summary import CompileSummary

    prov = dict(program.provenance or {})
    views = []
    for name, p in program.named_predictors():
        identity = getattr(p.lm, "identity", None)
        lm = identity() if callable(identity) else identity if isinstance(identity, dict) else None
        views.append(_view(name, p, p.template(), lm, None))
    return ReportData(
        title=title,
        program=type(program).__module__ + "." + type(program).__qualname__,
        oobleck_version=__version__,
        provenance=prov,
        predictors=views,
        summary=CompileSummary.of(program) if prov else None,
    )


def render_report(source: str | os.PathLike[str] | Artifact | Module, *, title: str | None = None) -> str:
    """The report page of an artifact file, a loaded artifact, or a (compiled) program, as HTML.

    Args:
        source: an artifact path, an :class:`~oobleck.artifact.Artifact`, or a program (a
            compile's result adds its token split and wall time).
        title: the page's heading (default: the artifact's file name, or the program's class).

    Raises:
        ArtifactError: the file is not a readable artifact.
    """
    from oobleck.artifact import Artifact
    from oobleck.module import Module

    if isinstance(source, Module):
        return page(_from_program(source, title or type(source).__name__))
    if isinstance(source, Artifact):
        return page(_from_artifact(source, title or Path(source.source).name))
    from oobleck._tool_schema import placeholders
    from oobleck.artifact import load

    with placeholders():  # an agent's tools are described, not needed
        art = load(source)
    return page(_from_artifact(art, title or Path(source).name))


def write_report(
    source: str | os.PathLike[str] | Artifact | Module, path: str | os.PathLike[str], *, title: str | None = None
) -> Path:
    """Write the report page of ``source`` to ``path`` (atomically; an input is never overwritten).

    Returns:
        The path written.

    Raises:
        WriteError: the target was refused (a folder, a symlink, the artifact itself) or could
            not be written; nothing was changed.
        ArtifactError: the artifact could not be read.
    """
    from oobleck._files import atomic_write, check_target
    from oobleck.artifact import Artifact

    # A loaded artifact's file is an input too (its source names it; one made in memory names no file).
    inputs: list[str | os.PathLike[str]] = (
        [source] if isinstance(source, (str, os.PathLike)) else [source.source] if isinstance(source, Artifact) else []
    )
    check_target(path, inputs=inputs)  # refused before the artifact is read
    html = render_report(source, title=title)
    atomic_write(path, html.encode("utf-8"), inputs=inputs)
    return Path(path)
