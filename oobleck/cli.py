"""The ``oobleck`` command: compile, run, evaluate, inspect, diff and serve frozen programs.

Results go to stdout (JSON for machines, plain text for people); progress and errors go to
stderr. Exit status: 0 on success, 1 on an error (or, for ``diff``, when the artifacts differ),
2 on a usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from oobleck import _types
from oobleck.context import context, current
from oobleck.errors import ConfigError, OobleckError
from oobleck.lm.base import LM

__all__ = ["build_parser", "main"]

log = logging.getLogger("oobleck.cli")

_OPTIMIZERS = {
    "labeled": "LabeledFewShot",
    "bootstrap": "BootstrapFewShot",
    "random_search": "RandomSearch",
    "knn": "KNN",
}
_NEEDS_METRIC = {"bootstrap", "random_search"}
_METRICS = ("exact_match", "f1", "passage_match")

_EPILOG = """\
examples:
  oobleck compile "question -> answer" --train train.jsonl --val dev.jsonl \\
      --optimizer bootstrap --metric exact_match --max-lm-calls 500 -o qa.json
  oobleck run qa.json '{"question": "What is the capital of France?"}'
  oobleck run qa.json --jsonl questions.jsonl > answers.jsonl
  oobleck eval qa.json dev.jsonl --metric exact_match
  oobleck inspect qa.json
  oobleck diff before.json after.json
  oobleck serve qa.json --port 8000

LMs: --lm local (default; the embedded SmolLM2 model), --lm local:/path/model.gguf,
     --lm openai:MODEL [--base-url URL] (key from $OPENAI_API_KEY; never saved)."""


class _Fail(Exception):
    """A CLI-level error: its message is printed and the command exits with status 1."""


# ---------------------------------------------------------------- helpers


def _lm_from(spec: str | None, base_url: str | None, temperature: float | None = None) -> LM | None:
    """The LM for ``--lm``: explicit flag > the current oobleck.context > the local model."""
    if spec is None:
        if current().lm is not None:
            return None  # already in force
        spec = "local"
    params: dict[str, Any] = {} if temperature is None else {"temperature": temperature}
    if spec == "local" or spec.startswith("local:"):
        from oobleck.lm.local import LocalLM

        path = spec.partition(":")[2] or None
        return LocalLM(path, **params)
    if spec.startswith("openai:") and spec.partition(":")[2]:
        from oobleck.lm.openai import OpenAILM

        return OpenAILM(spec.partition(":")[2], base_url=base_url, **params)
    raise _Fail(f"--lm {spec!r} is not understood; use 'local', 'local:PATH.gguf' or 'openai:MODEL'")


@contextlib.contextmanager
def _using_lm(args: argparse.Namespace) -> Iterator[None]:
    lm = _lm_from(getattr(args, "lm", None), getattr(args, "base_url", None), getattr(args, "temperature", None))
    backend = lm
    if lm is not None and not getattr(args, "no_cache", False):
        from oobleck.lm.cached import Cache, CachedLM, default_cache_dir

        lm = CachedLM(lm, cache=Cache(getattr(args, "cache", None) or default_cache_dir()))
    settings: dict[str, Any] = {} if lm is None else {"lm": lm}
    if getattr(args, "adapter", None):
        from oobleck.adapters import adapter_from_name

        settings["adapter"] = adapter_from_name(args.adapter)
    try:
        with context(**settings):
            yield
    finally:
        close = getattr(backend, "close", None)
        if callable(close):
            close()


def _import_attr(spec: str) -> Any:
    """``path/to/file.py[:attr]`` or ``package.module:attr`` (default attr: ``program``)."""
    target, _, attr = spec.partition(":") if not Path(spec).exists() else (spec, "", "")
    if target.endswith(".py") and ":" in spec and not Path(target).exists():
        raise _Fail(f"no such file {target}")
    attr = attr or "program"
    if target.endswith(".py"):
        path = Path(target).resolve()
        sys.path.insert(0, str(path.parent))
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        if module_spec is None or module_spec.loader is None:
            raise _Fail(f"cannot import {target}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[path.stem] = module
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise _Fail(f"cannot import {target!r}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise _Fail(f"{target} has no attribute {attr!r}; name it as {target}:NAME") from None


def _program(spec: str, *, cot: bool = False) -> Any:
    """A Module from a signature string, a Python file or ``module:attr``."""
    from oobleck.module import Module, Predict
    from oobleck.modules import ChainOfThought

    if "->" in spec:
        return ChainOfThought(spec) if cot else Predict(spec)
    value = _import_attr(spec)
    if isinstance(value, type) and issubclass(value, Module) or callable(value) and not isinstance(value, Module):
        value = value()
    if not isinstance(value, Module):
        raise _Fail(f"{spec} is a {type(value).__name__}, not an oobleck Module")
    return value


def _load(path: str, program: str | None) -> Any:
    from oobleck.artifact import load

    return load(path, program=_program(program) if program else None)


def _read_jsonl(path: str, *, inputs: Sequence[str] | None = None) -> list[Any]:
    from oobleck.example import Example

    stream: TextIO
    with contextlib.ExitStack() as stack:
        stream = sys.stdin if path == "-" else stack.enter_context(open(path, encoding="utf-8"))
        rows: list[Any] = []
        for n, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _Fail(f"{path}:{n}: not a JSON object ({exc.msg})") from None
            if not isinstance(row, dict):
                raise _Fail(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
            if inputs is not None:
                missing = [k for k in inputs if k not in row]
                if missing:
                    raise _Fail(f"{path}:{n}: missing input field(s) {missing}")
                rows.append(Example(row).with_inputs(*inputs))
            else:
                rows.append(row)
    if not rows:
        raise _Fail(f"{path} has no rows")
    return rows


def _inputs_of(args: argparse.Namespace, program: Any) -> list[str]:
    if args.inputs:
        return [name for part in args.inputs for name in part.split(",") if name]
    named = program.named_predictors()
    if len(named) == 1:
        return list(named[0][1].signature.input_fields)
    raise _Fail("this program has several predictors: name its inputs with --inputs field1,field2")


def _metric(name: str | None) -> Any:
    if name is None:
        return None
    if name not in _METRICS:
        raise _Fail(f"unknown metric {name!r}; choose one of {', '.join(_METRICS)}")
    metrics = importlib.import_module("oobleck.metrics")
    return getattr(metrics, name)


def _option(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise _Fail(f"optimizer option {text!r} must look like name=value")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def _emit(value: Any, *, out: TextIO) -> None:
    out.write(json.dumps(_types.to_jsonable(value), ensure_ascii=False, sort_keys=True) + "\n")
    out.flush()


def _result_data(result: Any) -> Any:
    return dict(result) if hasattr(result, "keys") else result


# ---------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace) -> int:
    """Run an artifact on one JSON object of inputs, or on every line of a JSONL file."""
    art = _load(args.artifact, args.program)
    call = art.predictors[args.predictor].__call__ if args.predictor else art.__call__
    if args.predictor and args.predictor not in art.predictors:
        raise _Fail(f"no predictor {args.predictor!r}; the artifact has {list(art.predictors)}")
    if (args.inputs_json is None) == (args.jsonl is None):
        raise _Fail("give the inputs as one JSON object argument, or --jsonl FILE (- for stdin)")
    if args.inputs_json is not None:
        try:
            inputs = json.loads(args.inputs_json)
        except json.JSONDecodeError as exc:
            raise _Fail(f"the inputs are not JSON: {exc.msg}") from None
        if not isinstance(inputs, dict):
            raise _Fail('the inputs must be a JSON object, like {"question": "..."}')
        rows = [inputs]
    else:
        rows = _read_jsonl(args.jsonl)
    failures = 0
    with _using_lm(args):
        for i, row in enumerate(rows):
            try:
                _emit(_result_data(call(**row)), out=sys.stdout)
            except OobleckError as exc:
                if args.jsonl is None:
                    raise
                failures += 1
                log.warning("row %d failed: %s", i + 1, exc)
                _emit({"error": {"type": type(exc).__name__, "message": str(exc)}}, out=sys.stdout)
    return 1 if failures else 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """Show the prompts, parameters and provenance stored in an artifact."""
    from oobleck.artifact import load

    art = load(args.artifact)
    names = [args.predictor] if args.predictor else list(art.predictors)
    for name in names:
        if name not in art.predictors:
            raise _Fail(f"no predictor {name!r}; the artifact has {list(art.predictors)}")
    inputs = json.loads(args.inputs) if args.inputs else None
    if args.json:
        data = {
            "artifact": args.artifact,
            "class": art.class_path,
            "runnable": art.runnable,
            "oobleck_version": art.oobleck_version,
            "schema_version": art.schema_version,
            "provenance": art.provenance,
            "predictors": {
                n: [m.model_dump() for m in (art.predictors[n].render(**inputs) if inputs else art.templates[n])]
                for n in names
            },
        }
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
        return 0
    out = [f"artifact   {args.artifact}  (oobleck {art.oobleck_version}, schema {art.schema_version})"]
    how = "runs as is" if art.runnable else "user class: run it with --program, or call one predictor"
    out.append(f"program    {art.class_path or type(art.program).__name__}  ({how})")
    for key, value in sorted(art.provenance.items()):
        out.append(f"provenance {key}: {json.dumps(_types.to_jsonable(value), ensure_ascii=False, sort_keys=True)}")
    for name in names:
        p = art.predictors[name]
        lm = art.lm_identities[name]
        out += [
            "",
            f"== predictor {name} ==",
            f"signature  {p.signature}",
            f"adapter    {p.resolve_adapter().name} v{p.resolve_adapter().version}    demos {len(p.demos)}    "
            + f"max_retries {p.max_retries if p.max_retries is not None else '-'}",
            f"config     {json.dumps(p.config, sort_keys=True)}    lm {json.dumps(lm, sort_keys=True) if lm else '-'}",
        ]
        messages = p.render(**inputs) if inputs else art.templates[name]
        for m in messages:
            out += [f"--- {m.role} ---", m.content]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    """Show the instructions, demos and settings that differ between two artifacts."""
    from oobleck import _artifact_schema as schema
    from oobleck._artifact_diff import diff_docs, format_changes

    docs = []
    for path in (args.before, args.after):
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise _Fail(f"cannot read {path}: {exc.strerror}") from None
        docs.append(schema.validate(schema.parse_text(raw, source=path), source=path))
    changes = diff_docs(docs[0], docs[1])
    if args.json:
        _emit([c.to_dict() for c in changes], out=sys.stdout)
    else:
        sys.stdout.write(format_changes(changes, before=args.before, after=args.after) + "\n")
    return 1 if changes else 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve an artifact over HTTP until interrupted."""
    from oobleck.serve import make_server

    art = _load(args.artifact, args.program)
    with _using_lm(args):
        server = make_server(art, host=args.host, port=args.port)
        host, port = server.server_address[:2]
        sys.stderr.write(f"serving {args.artifact} on http://{host!s}:{port}  (POST / with JSON inputs; Ctrl-C stops)\n")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Score an artifact (or a program) on a JSONL dataset with a metric."""
    try:
        from oobleck.evaluate import evaluate
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise _Fail(f"evaluation is not available in this install: {exc}") from exc
    if args.target.endswith(".json"):
        art = _load(args.target, args.program)
        program, runner = art.program, art
    else:
        program = runner = _program(args.target, cot=args.cot)
    rows = _read_jsonl(args.data, inputs=_inputs_of(args, program))
    with _using_lm(args):
        result = evaluate(
            runner,  # type: ignore[arg-type]
            rows,
            _metric(args.metric),
            num_threads=args.threads,
            progress=not args.quiet,
            max_errors=args.max_errors,
        )
    if args.output:
        result.to_json(args.output)
        sys.stderr.write(f"wrote {args.output}\n")
    if args.json:
        _emit({k: v for k, v in result.to_dict().items() if k != "rows"}, out=sys.stdout)
    else:
        sys.stdout.write(result.table(max_rows=args.show) + "\n")
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    """Optimize a program on training data and save the frozen artifact."""
    try:
        optimize = importlib.import_module("oobleck.optimize")
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise _Fail(f"optimizers are not available in this install: {exc}") from exc
    if not args.dry_run and not args.output:
        raise _Fail("name the artifact to write with --output FILE.json (or use --dry-run)")
    program = _program(args.program, cot=args.cot)
    inputs = _inputs_of(args, program)
    train = _read_jsonl(args.train, inputs=inputs)
    val = _read_jsonl(args.val, inputs=inputs) if args.val else None
    options = dict(_option(o) for o in args.option)
    if args.max_lm_calls is not None:
        options["max_lm_calls"] = args.max_lm_calls
    if args.max_tokens is not None:
        options["max_tokens"] = args.max_tokens
    metric = _metric(args.metric)
    if args.optimizer in _NEEDS_METRIC and metric is None:
        raise _Fail(f"--optimizer {args.optimizer} scores candidates: pass --metric ({', '.join(_METRICS)})")
    cls = getattr(optimize, _OPTIMIZERS[args.optimizer])
    try:
        optimizer = cls(metric, **options) if args.optimizer in _NEEDS_METRIC else cls(**options)
    except TypeError as exc:
        raise _Fail(f"bad option for {cls.__name__}: {exc}") from None
    if args.dry_run:
        estimate = optimizer.compile(program, trainset=train, valset=val, seed=args.seed, dry_run=True)
        sys.stderr.write(f"{cls.__name__}: {estimate}\n")
        _emit(estimate.to_dict(), out=sys.stdout)
        return 0
    with _using_lm(args):
        sys.stderr.write(f"compiling with {cls.__name__} on {len(train)} rows...\n")
        compiled = optimizer.compile(program, trainset=train, valset=val, seed=args.seed, checkpoint=args.checkpoint)
        # Saved inside the context, so the artifact records the adapter and LM the compile used.
        compiled.save(args.output)
    provenance = getattr(compiled, "provenance", {}) or {}
    sys.stderr.write(f"saved {args.output}\n")
    _emit({"output": args.output, "optimizer": cls.__name__, "scores": provenance.get("scores")}, out=sys.stdout)
    return 0


# ---------------------------------------------------------------- parser


def _add_lm(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("LM")
    g.add_argument("--lm", metavar="SPEC", help="local (default), local:PATH.gguf or openai:MODEL")
    g.add_argument("--base-url", metavar="URL", help="server URL for --lm openai:MODEL (e.g. http://127.0.0.1:8080/v1)")
    g.add_argument("--temperature", type=float, default=0.0, metavar="T", help="decoding temperature (default 0)")
    g.add_argument("--adapter", choices=["chat", "json"], help="prompt format for predictors that set none (default chat)")
    g.add_argument("--cache", metavar="DIR", help="LM cache directory (default $OOBLECK_CACHE_DIR or ~/.cache/oobleck)")
    g.add_argument("--no-cache", action="store_true", help="call the LM every time")


def _add_program(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--program",
        metavar="SPEC",
        help="your program class (file.py:Class or module:Class) to run its forward() with the saved parameters",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``oobleck`` command."""
    parser = argparse.ArgumentParser(
        prog="oobleck",
        description="Compile declarative LM programs into frozen, readable prompt programs.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("compile", help="optimize a program on data and save the artifact", description=cmd_compile.__doc__)
    p.add_argument("program", help='a signature ("question -> answer"), file.py[:attr] or module:attr')
    p.add_argument("--train", required=True, metavar="JSONL", help="training rows, one JSON object per line")
    p.add_argument("--val", metavar="JSONL", help="validation rows for optimizers that score candidates")
    p.add_argument("--inputs", action="append", metavar="F1,F2", help="input field names (default: the signature's)")
    p.add_argument("--metric", help=f"one of {', '.join(_METRICS)}")
    p.add_argument("--optimizer", default="bootstrap", choices=sorted(_OPTIMIZERS), help="default: bootstrap")
    p.add_argument("-O", "--option", action="append", default=[], metavar="NAME=VALUE", help="optimizer option (JSON value), repeatable")
    p.add_argument("--max-lm-calls", type=int, metavar="N", help="stop cleanly after N LM calls (cache hits are free)")
    p.add_argument("--max-tokens", type=int, metavar="N", help="stop cleanly after N tokens")
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
    p.add_argument("--jsonl", metavar="FILE", help="one JSON object of inputs per line (- for stdin); one output line each")
    p.add_argument("--predictor", metavar="NAME", help="run only this predictor")
    _add_program(p)
    _add_lm(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("eval", help="score an artifact or program on a dataset", description=cmd_eval.__doc__)
    p.add_argument("target", help="an artifact (.json), a signature, file.py[:attr] or module:attr")
    p.add_argument("data", metavar="JSONL", help="rows with inputs and labels")
    p.add_argument("--inputs", action="append", metavar="F1,F2", help="input field names (default: the signature's)")
    p.add_argument("--metric", default="exact_match", help=f"one of {', '.join(_METRICS)} (default exact_match)")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="rows run in parallel")
    p.add_argument("--max-errors", type=int, default=10, metavar="N", help="failed rows tolerated (default 10)")
    p.add_argument("--show", type=int, default=10, metavar="N", help="rows shown in the table (default 10)")
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
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("diff", help="what changed between two artifacts", description=cmd_diff.__doc__)
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--json", action="store_true", help="print the changes as JSON")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("serve", help="serve an artifact over HTTP", description=cmd_serve.__doc__)
    p.add_argument("artifact")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 picks a free one)")
    _add_program(p)
    _add_lm(p)
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``oobleck`` command; returns the exit status.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    try:
        return int(args.func(args))
    except (_Fail, OobleckError, ConfigError) as exc:
        sys.stderr.write(f"oobleck {args.command}: error: {exc}\n")
        return 1
    except BrokenPipeError:  # `oobleck run ... | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
