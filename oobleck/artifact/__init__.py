"""Frozen artifacts: a compiled program as one self-describing JSON file.

``program.save("qa.json")`` writes everything needed to run the program without the Python
class that built it: per predictor its signature (field names, types, descriptions, JSON
schemas, instructions), demos, adapter name and version, decoding config, retries, the LM's
identity (never a key) and the exact prompt template it renders; the module graph; and the
provenance the optimizer left on ``program.provenance``. ``oobleck.artifact.load("qa.json")``
gives back a callable :class:`Artifact`. Keys are sorted and nothing varies between runs, so the
same program always saves to the same bytes.

A shortened example::

    {
      "format": "oobleck.artifact",
      "metadata": {},
      "oobleck_version": "0.1.0",
      "predictors": [
        {
          "adapter": {"name": "chat", "options": {}, "version": "1"},
          "config": {"temperature": 0.0},
          "demos": [{"answer": "Paris", "question": "Capital of France?"}],
          "lm": {"backend": "openai", "endpoint": "https://api.openai.com/v1/", "model": "gpt-4o-mini"},
          "max_retries": 1,
          "name": "self",
          "signature": {"fields": [...], "instructions": "Answer in a few words.", "name": "Signature"},
          "template": [{"content": "Answer in a few words. ...", "role": "system"}, ...]
        }
      ],
      "program": {"name": "self", "node": "predictor"},
      "provenance": {"optimizer": "BootstrapFewShot", "seed": 0, "scores": {...}},
      "schema_version": 1
    }

An adapter no one named is saved with ``"auto": true`` (its ``name`` is the adapter the template
was rendered with): the loaded predictor chooses its adapter, and with ``mode="auto"`` whether
to score its labels, for the LM it is called with, as the program did before it was saved. A
named adapter, mode or calibration loads as named.

Loading reads JSON only: no pickle, no import of any class path named in the file, no code
from the file. Anything unexpected (corrupt, truncated, newer ``schema_version``, wrong types,
hostile structure) raises :class:`~oobleck.errors.ArtifactError` saying what is wrong.
"""

from oobleck.artifact._export import export_messages, export_request
from oobleck.artifact._graph import FrozenModule
from oobleck.artifact._load import Artifact, ArtifactWarning, load, loads
from oobleck.artifact._save import save, to_dict
from oobleck.artifact._schema import SCHEMA_VERSION
from oobleck.artifact._side_files import SideFiles

__all__ = [
    "SCHEMA_VERSION",
    "Artifact",
    "ArtifactWarning",
    "FrozenModule",
    "SideFiles",
    "export_messages",
    "export_request",
    "load",
    "loads",
    "save",
    "to_dict",
]
