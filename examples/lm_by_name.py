"""LMs by name: one string picks the backend, with no network needed to see what it would do.

1. ``oobleck.LM("local")`` runs the embedded SmolLM2 model in this process and answers a small
   sentiment program.
2. For ``openai/...``, ``anthropic/...``, ``gemini/...``, ``ollama/...`` and a vLLM server the same
   program is built on each, and ``lm.preview(request)`` prints the HTTP request it would send
   (endpoint, auth header with the key masked, JSON body), without sending anything. The keys
   here are placeholders passed as ``api_key=``; normally each comes from the provider's usual
   environment variable (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, ``GEMINI_API_KEY``).
3. A missing key is a ConfigError that names the variable to set.

Run it with ``python examples/lm_by_name.py`` inside the venv. Writes a JSON summary to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Literal

import oobleck
from oobleck import ConfigError, InputField, OutputField, Predict, Signature

HERE = Path(__file__).resolve().parent


class Review(Signature):
    """Is the movie review positive or negative?"""

    text: str = InputField()
    label: Literal["positive", "negative"] = OutputField()


SPECS = [
    "openai/gpt-4o-mini",
    "anthropic/claude-3-5-haiku-latest",
    "gemini/gemini-2.0-flash",
    "ollama/llama3.2:1b",
    "vllm/Qwen/Qwen2.5-1.5B-Instruct@http://gpu-box:8000/v1",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(HERE / "out" / "lm_by_name.json"), help="where to write the summary")
    parser.add_argument("--cache", default=None, help="unused (the suite passes it to every example)")
    parser.add_argument("--quick", action="store_true", help="accepted for the suite; the run is already quick")
    args = parser.parse_args()

    text = "a warm, funny and moving film"
    local = oobleck.LM("local", max_tokens=16)
    label = Predict(Review, lm=local)(text=text).label
    print(f"local -> {label}  ({local!r})")
    summary: dict[str, object] = {"local": label, "previews": {}}

    for spec in SPECS:
        lm = oobleck.LM(spec, api_key="sk-placeholder-not-a-real-key", temperature=0, max_tokens=16)
        request = Predict(Review, lm=lm).request(text=text)
        preview = lm.preview(request)
        body = preview["json"]
        print(f"\n{spec}\n  POST {preview['url']}\n  Authorization: {preview['headers']['Authorization']}")
        print(f"  model={body['model']!r} temperature={body['temperature']} max_tokens={body['max_tokens']}")
        print(f"  response_format: {'JSON schema' if 'response_format' in body else 'none (chat format)'}")
        assert "sk-placeholder" not in json.dumps(preview)  # the key is never shown
        summary["previews"][spec] = {"url": preview["url"], "model": body["model"]}  # type: ignore[index]

    saved = os.environ.pop("ANTHROPIC_API_KEY", None)
    try:
        oobleck.LM("anthropic/claude-3-5-haiku-latest")
    except ConfigError as exc:
        print(f"\nwithout a key: {exc}")
        summary["missing_key_error"] = str(exc)
    finally:
        if saved is not None:
            os.environ["ANTHROPIC_API_KEY"] = saved
    local.close()

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return 0 if label in ("positive", "negative") and "missing_key_error" in summary else 1


if __name__ == "__main__":
    sys.exit(main())
