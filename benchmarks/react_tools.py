"""The tools and metrics of benchmarks/react.py, and the HTTP endpoint that lends them to DSPy.

Both frameworks call the very same functions: oobleck in-process, DSPy (in its own venv and
process) through a small HTTP server on 127.0.0.1 that this process runs, so a tool answers the
same text to both.

- ``search(query)``: BM25 (bm25s, English stopwords) over the pooled HotPotQA corpus
  (../shared/data/hotpotqa/corpus.jsonl, 8,842 paragraphs indexed as title + text); the best
  ``SEARCH_K`` paragraphs as ``title: text``, each cut to ``PASSAGE_CHARS`` characters (the
  135M model's context is small).
- ``calculate(expression)``: + - * / ** % and parentheses on numbers, parsed with ``ast`` (no
  eval); an error is returned as text.
"""

from __future__ import annotations

import ast
import json
import operator
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from _common import DATA, read_jsonl

from oobleck.metrics import normalize_text

SEARCH_K = 2
PASSAGE_CHARS = 300
_INDEX: Any = None
_LOCK = threading.Lock()


def _index() -> Any:
    global _INDEX
    with _LOCK:
        if _INDEX is None:
            from oobleck.retrieve import BM25Index, Documents

            rows = read_jsonl(DATA / "hotpotqa" / "corpus.jsonl")
            docs = Documents.from_corpus([{"id": r["title"], "title": r["title"], "text": r["text"]} for r in rows])
            _INDEX = BM25Index(docs, show_progress=False)
    return _INDEX


def search(query: str) -> str:
    """Search Wikipedia paragraphs; returns the two best matches as "title: text".

    Args:
        query: a few words naming what to look up.
    """
    hits = _index().search([query], k=SEARCH_K)[0]
    if not hits:
        return "No results."
    return "\n".join(f"{p.title}: {p.text.strip()[:PASSAGE_CHARS]}" for p in hits)


_OPS: dict[type, Any] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.Mod: operator.mod,
}


def calculate(expression: str) -> str:
    """Compute an arithmetic expression with + - * / ** % and parentheses, e.g. (12 + 3) * 4.

    Args:
        expression: the arithmetic expression, numbers only.
    """

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 64:
                raise ValueError("exponent too large")
            return float(_OPS[type(node.op)](left, right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            v = value(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        raise ValueError(f"only numbers and + - * / ** % are allowed, got {ast.unparse(node)!r}")

    try:
        result = value(ast.parse(expression.replace(",", "").strip(), mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, RecursionError) as exc:
        return f"Error: {exc}"
    return str(int(result)) if result == int(result) and abs(result) < 1e15 else f"{result:.6g}"


# ---- metrics (the DSPy side reimplements these in dspy_side/react.py, identically) ----

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def number_of(text: Any) -> float | None:
    """The last number in ``text`` (thousands commas removed), or None."""
    found = _NUMBER.findall(str(text).replace(",", ""))
    return float(found[-1]) if found else None


def gsm8k_correct(gold: Any, answer: Any) -> bool:
    """The answer's last number equals the gold number."""
    got, want = number_of(answer), number_of(gold)
    return got is not None and want is not None and abs(got - want) < 1e-6


def token_f1(gold: Any, answer: Any) -> float:
    """SQuAD token F1 after oobleck's normalisation."""
    g, p = normalize_text(gold).split(), normalize_text(answer).split()
    common = sum(min(g.count(t), p.count(t)) for t in set(g) & set(p))
    if not g or not p or not common:
        return float(g == p)
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def exact(gold: Any, answer: Any) -> bool:
    return normalize_text(gold) == normalize_text(answer)


# ---- the HTTP endpoint for the DSPy side ----


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        url = urlparse(self.path)
        args = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/search":
            text = search(args.get("query", ""))
        elif url.path == "/calculate":
            text = calculate(args.get("expression", ""))
        else:
            self.send_error(404)
            return
        body = json.dumps({"text": text}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def serve_tools(port: int) -> ThreadingHTTPServer:
    """Serve ``/search?query=`` and ``/calculate?expression=`` on 127.0.0.1:port (a daemon thread)."""
    server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
