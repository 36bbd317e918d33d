"""Optimizers: each turns a program and data into a new program with other parameters.

Every ``compile(program, *, trainset, valset=None, seed=0, checkpoint=None, dry_run=False)``
returns a copy (the input is never changed) carrying a ``provenance`` dict, and honours
``max_lm_calls=`` / ``max_tokens=`` by stopping cleanly with the best program so far.

The seam for a new optimizer is public: subclass :class:`Optimizer` and implement its three
hooks (``_settings``, ``_estimate`` returning a :class:`CostEstimate`, and ``_compile``, which
receives the :class:`CompileRun` of the call); the frame does the rest (validation, budget,
checkpoint, progress bar, provenance). See DEVELOPERS.md, "Adding an optimizer".

The searching optimizers choose on selection rows and state their verdict on confirming rows
the search never saw (``provenance["scores"]["verdict"]``; :func:`verdict_lines` words it).
:class:`Auto` runs a portfolio of them under one call budget.
"""

from __future__ import annotations

from oobleck._estimate import CostEstimate
from oobleck.optimize._base import CompileRun, Optimizer
from oobleck.optimize._scoring import PairedInterval, paired_interval
from oobleck.optimize._search import verdict_lines
from oobleck.optimize._summary import CompileSummary
from oobleck.optimize.auto import Auto
from oobleck.optimize.bootstrap import BootstrapFewShot
from oobleck.optimize.ensemble import Ensemble, ensemble, majority
from oobleck.optimize.instruction_search import InstructionSearch
from oobleck.optimize.joint_search import JointSearch
from oobleck.optimize.knn import KNN
from oobleck.optimize.labeled import LabeledFewShot
from oobleck.optimize.random_search import RandomSearch
from oobleck.optimize.reflective import ReflectiveEvolution

__all__ = [
    "KNN",
    "Auto",
    "BootstrapFewShot",
    "CompileRun",
    "CompileSummary",
    "CostEstimate",
    "Ensemble",
    "InstructionSearch",
    "JointSearch",
    "LabeledFewShot",
    "Optimizer",
    "PairedInterval",
    "RandomSearch",
    "ReflectiveEvolution",
    "ensemble",
    "majority",
    "paired_interval",
    "verdict_lines",
]
