"""The ``oobleck`` command line: its argument parser and ``main``."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from oobleck._files import protecting
from oobleck.adapters.template import ADAPTERS
from oobleck.cli._commands import (
    METRICS,
    OPTIMIZERS,
    cmd_compile,
    cmd_diff,
    cmd_eval,
    cmd_inspect,
    cmd_run,
    cmd_serve,
    inputs_of,
)
from oobleck.cli._program import CLIError, UsageError
from oobleck.cli._report import cmd_report
from oobleck.errors import ConfigError, OobleckError

__all__ = ["build_parser", "main"]

log = logging.getLogger("oobleck.cli")

_EPILOG = """\
examples:
  oobleck compile "question -> answer" --train train.jsonl --val dev.jsonl \\
      --optimizer bootstrap --metric exact_match --max-lm-calls 500 -o qa.json
  oobleck run qa.json '{"question": "What is the capital of France?"}'
  oobleck run qa.json --jsonl questions.jsonl > answers.jsonl
  oobleck eval qa.json dev.jsonl --metric exact_match
  oobleck inspect qa.json
  oobleck diff before.json after.json
  oobleck report qa.json -o report.html
  oobleck serve qa.json --port 8000

LMs (--lm, as oobleck.LM): local (default; the embedded SmolLM2 model), local:/path/model.gguf,
     openai/MODEL, anthropic/MODEL, gemini/MODEL, ollama/MODEL, vllm/MODEL@http://host:8000/v1,
     or a server URL http://host:8080/v1. Keys from $OPENAI_API_KEY, $ANTHROPIC_API_KEY,
     $GEMINI_API_KEY (or $GOOGLE_API_KEY), $VLLM_API_KEY; never saved.
Metrics (--metric): exact_match, f1, passage_match, or your own: my_metrics.py:label_ok or
     package.module:fn (called as fn(example, prediction, trace=None))."""


def _number(kind: type[int] | type[float], low: float, high: float = math.inf) -> Callable[[str], float]:
    """An argparse ``type``: a finite ``kind`` in ``[low, high]``; anything else is a usage error."""
    what = "an integer" if kind is int else "a number"
    bounds = f">= {low:g}" if high == math.inf else f"between {low:g} and {high:g}"

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} {bounds}, got {text!r}") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {what} {bounds}, got {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


_COUNT = _number(int, 0)
_POSITIVE = _number(int, 1)


def _add_lm(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("LM")
    g.add_argument(
        "--lm",
        metavar="SPEC",
        help="local (default), local:PATH.gguf, PROVIDER/MODEL (openai, anthropic, gemini, ollama, vllm), "
        "PROVIDER/MODEL@URL or a server URL",
    )
    g.add_argument("--base-url", metavar="URL", help="replace the endpoint of --lm (e.g. http://127.0.0.1:8080/v1)")
    g.add_argument(
        "--temperature",
        type=_number(float, 0, 2),
        default=0.0,
        metavar="T",
        help="decoding temperature, 0 to 2 (default 0)",
    )
    g.add_argument(
        "--adapter",
        choices=list(ADAPTERS),
        help="prompt format for predictors that set none (default: chosen from the LM's capabilities, "
        "constrained JSON where it takes a JSON schema)",
    )
    g.add_argument("--cache", metavar="DIR", help="LM cache directory (default $OOBLECK_CACHE_DIR or ~/.cache/oobleck)")
    g.add_argument("--no-cache", action="store_true", help="call the LM every time")


def _add_program(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--program",
        metavar="SPEC",
        help="your program class (file.py:Class or module:Class) to run its forward() with the saved parameters",
    )
    p.add_argument(
        "--allow-model",
        action="append",
        default=[],
        metavar="DIR",
        help="a local model folder the artifact may name (e.g. a KNN embedder); repeatable. Others are refused",
    )
    p.add_argument(
        "--tools",
        action="append",
        metavar="SPEC",
        help="the tools an agent calls (file.py:attr or module:attr, attr default 'tools'): a function, "
        "a Tool, an MCPServer or a list of them; repeatable. Artifacts store no code",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``oobleck`` command."""
    parser = _Parser(
        prog="oobleck",
        description="Compile declarative LM programs into frozen, readable prompt programs.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "compile", help="optimize a program on data and save the artifact", description=cmd_compile.__doc__
    )
    p.add_argument("program", help='a signature ("question -> answer"), file.py[:attr] or module:attr')
    p.add_argument("--train", required=True, metavar="JSONL", help="training rows, one JSON object per line")
    p.add_argument("--val", metavar="JSONL", help="validation rows for optimizers that score candidates")
    p.add_argument("--inputs", action="append", metavar="F1,F2", help="input field names (default: the signature's)")
    p.add_argument("--metric", help=f"{', '.join(METRICS)}, or your own: file.py:fn or package.module:fn")
    p.add_argument("--optimizer", default="bootstrap", choices=sorted(OPTIMIZERS), help="default: bootstrap")
    p.add_argument(
        "--prompt-lm", metavar="SPEC", help="the LM that writes instructions (default: the task LM; same forms as --lm)"
    )
    p.add_argument(
        "-O",
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="optimizer option (JSON value), repeatable",
    )
    p.add_argument(
        "--max-lm-calls", type=_COUNT, metavar="N", help="stop cleanly after N LM calls (cache hits are free)"
    )
    p.add_argument("--max-tokens", type=_COUNT, metavar="N", help="stop cleanly after N tokens")
    p.add_argument("--seed", type=int, default=0, help="the only source of randomness (default 0)")
    p.add_argument("--checkpoint", metavar="FILE", help="save progress here and resume from it")
    p.add_argument("--cot", action="store_true", help="for a signature: use ChainOfThought instead of Predict")
    p.add_argument("--dry-run", action="store_true", help="print the planned cost and call nothing")
    p.add_argument("-o", "--output", metavar="FILE.json", help="where to write the artifact")
    _add_lm(p)
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("run", help="run an artifact on JSON inputs", description=cmd_run.__doc__)
    p.add_argument("artifact", help="the artifact (.json)")
    p.add_argument("inputs_json", nargs="?", metavar="INPUTS", help='one JSON object, e.g. \'{"question": "..."}\'')
    p.add_argument(
        "--jsonl", metavar="FILE", help="one JSON object of inputs per line (- for stdin); one output line each"
    )
    p.add_argument("--predictor", metavar="NAME", help="run only this predictor")
    _add_program(p)
    _add_lm(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("eval", help="score an artifact or program on a dataset", description=cmd_eval.__doc__)
    p.add_argument("target", help="an artifact (.json), a signature, file.py[:attr] or module:attr")
    p.add_argument("data", metavar="JSONL", help="rows with inputs and labels")
    p.add_argument("--inputs", action="append", metavar="F1,F2", help="input field names (default: the signature's)")
    p.add_argument(
        "--metric",
        default="exact_match",
        help=f"{', '.join(METRICS)} (default exact_match), or your own: file.py:fn or package.module:fn",
    )
    p.add_argument("--threads", type=_POSITIVE, default=1, metavar="N", help="rows run in parallel")
    p.add_argument("--max-errors", type=_COUNT, default=10, metavar="N", help="failed rows tolerated (default 10)")
    p.add_argument("--show", type=_COUNT, default=10, metavar="N", help="rows shown in the table (default 10)")
    p.add_argument("--output", metavar="FILE.json", help="write every row's result as JSON")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--cot", action="store_true", help="for a signature: use ChainOfThought")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_program(p)
    _add_lm(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("inspect", help="show an artifact's prompts and parameters", description=cmd_inspect.__doc__)
    p.add_argument("artifact")
    p.add_argument("--predictor", metavar="NAME", help="only this predictor")
    p.add_argument("--inputs", metavar="JSON", help="render for these inputs instead of {placeholders}")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--top", type=_COUNT, default=5, metavar="N", help="candidates of an instruction search shown (default 5)"
    )
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("diff", help="what changed between two artifacts", description=cmd_diff.__doc__)
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--json", action="store_true", help="print the changes as JSON")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser(
        "report", help="write an artifact's compile report as one HTML page", description=cmd_report.__doc__
    )
    p.add_argument("artifact")
    p.add_argument("-o", "--output", required=True, metavar="FILE.html", help="the page to write")
    p.add_argument("--title", help="the page's heading (default: the artifact's file name)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("serve", help="serve an artifact over HTTP", description=cmd_serve.__doc__)
    p.add_argument("artifact")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument(
        "--port", type=_number(int, 0, 65535), default=8000, help="TCP port (default 8000; 0 picks a free one)"
    )
    p.add_argument(
        "--token", metavar="TOKEN", help="require Authorization: Bearer TOKEN (default $OOBLECK_SERVE_TOKEN)"
    )
    p.add_argument(
        "--no-token", action="store_true", help="allow serving beyond 127.0.0.1 without a token (warned about)"
    )
    p.add_argument(
        "--max-inflight", type=_POSITIVE, default=16, metavar="N", help="programs running at once (default 16)"
    )
    p.add_argument(
        "--conn-timeout",
        type=_number(float, 0.001, 86400),
        default=30.0,
        metavar="S",
        help="a request's headers, and its body, must arrive within S seconds (default 30)",
    )
    p.add_argument(
        "--max-batch", type=_POSITIVE, default=64, metavar="N", help="inputs in one POST /batch (default 64)"
    )
    p.add_argument(
        "--drain-timeout",
        type=_number(float, 0.001, 86400),
        metavar="S",
        help="on SIGTERM/SIGINT, wait at most S seconds for requests in flight (default: until they finish)",
    )
    _add_program(p)
    _add_lm(p)
    p.set_defaults(func=cmd_serve)
    return parser


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line that names the command and where to read more (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``oobleck`` command; returns the exit status.

    Every error is one line on stderr (``oobleck COMMAND: error: ...``) and a non-zero status:
    1 for a failure, 2 for a usage error (a setting refused before any work), 130 when
    interrupted. ``-v`` adds the traceback of
    an unexpected error.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "run" and args.inputs_json is None and len(extra) == 1 and extra[0][:1] != "-":
        # `run qa.json --lm X '{...}'`: argparse gives the optional INPUTS up once an option
        # separates it from the artifact; it is still the one JSON object of inputs.
        args.inputs_json, extra = extra[0], []
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.verbose:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    try:
        with protecting(inputs_of(args)):  # no file the command writes may be one it reads
            return int(args.func(args))
    except UsageError as exc:
        _fail(args, str(exc))
        return 2
    except (CLIError, OobleckError, ConfigError) as exc:
        _fail(args, str(exc))
    except BrokenPipeError:  # `oobleck run ... | head`
        return 0
    except KeyboardInterrupt:
        _fail(args, "interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - a bad file or argument must not end in a traceback
        if args.verbose:
            log.exception("oobleck %s failed", args.command)
        _fail(args, f"{type(exc).__name__}: {exc}")
    return 1


def _fail(args: argparse.Namespace, message: str) -> None:
    sys.stderr.write(f"oobleck {args.command}: error: {' '.join(message.split())}\n")
