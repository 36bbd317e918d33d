"""The hand-made corpus of the retrieval tests (tests/fixtures/tiny_wiki.jsonl), and helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def corpus() -> list[dict[str, Any]]:
    lines = (FIXTURES / "tiny_wiki.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


# Query -> the document every reasonable retriever ranks first on this corpus.
KNOWN = {
    "Who wrote the first algorithm for the Analytical Engine?": "ada",
    "Which river flows through Paris?": "seine",
    "highest mountain above sea level": "everest",
    "capital of Nepal": "nepal",
    "Which Dutch programmer was born in The Hague?": "guido",
    "radioactivity research": "curie",
}


def ids(passages: list[Any]) -> list[str]:
    return [p.id for p in passages]
