"""The commands of the ``oobleck`` CLI: compile, run, eval, inspect, diff, serve (one function each)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import json
import logging
import math
import os
import sys
import typing
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

from oobleck import _types, optimize
from oobleck._files import check_target, protecting
from oobleck.cli._program import CLIError, UsageError, load_artifact, metric_from, program_from
from oobleck.cli._provenance import provenance_lines
from oobleck.cli._trajectory import trajectory_lines
from oobleck.context import context, current
from oobleck.errors import InputError, OobleckError
from oobleck.lm.base import LM

__all__ = [
    "METRICS",
    "OPTIMIZERS",
    "cmd_compile",
    "cmd_diff",
    "cmd_eval",
    "cmd_inspect",
    "cmd_run",
    "cmd_serve",
    "inputs_of",
]

log = logging.getLogger("oobleck.cli")


def _offered() -> dict[str, type[optimize.Optimizer]]:
    """The optimizers ``--optimizer`` offers: those of ``oobleck.optimize`` with a ``cli_name``."""
    found: dict[str, type[optimize.Optimizer]] = {}
    for name in optimize.__all__:
        cls = getattr(optimize, name)
        if isinstance(cls, type) and issubclass(cls, optimize.Optimizer) and cls.cli_name is not None:
            if cls.cli_name in found:
                raise RuntimeError(f"{cls.__name__} and {found[cls.cli_name].__name__} share cli_name {cls.cli_name!r}")
            found[cls.cli_name] = cls
    return found


#: ``--optimizer`` name -> class; what the CLI needs to know of each (does it take a metric,
#: which option takes ``--prompt-lm``) is on the class (see :class:`oobleck.optimize.Optimizer`).
OPTIMIZERS = _offered()
METRICS = ("exact_match", "f1", "passage_match")


# ---------------------------------------------------------------- helpers


def _lm_from(spec: str | None, base_url: str | None, temperature: float | None = None) -> LM | None:
    """The LM for ``--lm``: explicit flag > the current oobleck.context > the local model.

    ``spec`` takes the forms of :func:`oobleck.LM` (``local``, ``openai/gpt-4o-mini``,
    ``anthropic/...``, ``vllm/MODEL@URL``, a server URL, ...); ``--base-url`` replaces its endpoint.
    """
    from oobleck.errors import ConfigError
    from oobleck.lm.providers import LM as lm_named
    from oobleck.lm.providers import parse_spec

    if spec is None:
        if current().lm is not None:
            return None  # already in force
        spec = "local"
    params: dict[str, Any] = {} if temperature is None else {"temperature": temperature}
    try:
        parsed = parse_spec(spec)
    except ConfigError as exc:
        raise CLIError(f"--lm {spec!r} is not understood: {exc}") from None
    if parsed.kind == "local" and base_url is not None:
        raise CLIError(f"--base-url is for a server; --lm {spec!r} runs the model in this process")
    return lm_named(spec, base_url=base_url, **params)


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


def _lines(stream: TextIO, path: str) -> Iterator[str]:
    try:
        yield from stream
    except UnicodeDecodeError as exc:
        raise CLIError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _jsonl_rows(path: str, *, inputs: Sequence[str] | None = None) -> Iterator[tuple[int, Any]]:
    """``(line number, row)`` for each JSON object of ``path`` (``-``: stdin), read as it comes.

    A line that is not a usable row yields a CLIError in place of the row, so a reader of
    stdin can answer it and go on; an unreadable file raises at once.
    """
    from oobleck.example import Example

    stream: TextIO
    with contextlib.ExitStack() as stack:
        try:
            stream = sys.stdin if path == "-" else stack.enter_context(open(path, encoding="utf-8"))
        except OSError as exc:
            raise CLIError(f"cannot read {path}: {exc.strerror or exc}") from None
        for n, line in enumerate(_lines(stream, path), 1):
            if n == 1:
                line = line.removeprefix("\ufeff")  # a byte-order mark, as Windows editors write
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield n, CLIError(f"{path}:{n}: not a JSON object ({exc.msg})")
                continue
            except (ValueError, RecursionError) as exc:  # e.g. an integer of thousands of digits
                yield n, CLIError(f"{path}:{n}: not a usable JSON object ({type(exc).__name__}: {str(exc)[:100]})")
                continue
            if not isinstance(row, dict):
                yield n, CLIError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
                continue
            if inputs is not None:
                missing = [k for k in inputs if k not in row]
                if missing:
                    yield n, CLIError(f"{path}:{n}: missing input field(s) {missing}")
                    continue
                row = Example(row).with_inputs(*inputs)
            yield n, row


def _read_jsonl(path: str, *, inputs: Sequence[str] | None = None) -> list[Any]:
    """Every row of ``path``, read before any work: the first bad line is a CLIError."""
    rows: list[Any] = []
    for _, row in _jsonl_rows(path, inputs=inputs):
        if isinstance(row, CLIError):
            raise row
        rows.append(row)
    if not rows:
        raise CLIError(f"{path} has no rows")
    return rows


def json_object(text: str, what: str) -> dict[str, Any]:
    """``text`` parsed as a JSON object, or a CLIError that says what was wrong."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CLIError(f"{what} is not JSON ({exc.msg} at column {exc.colno}): {text[:60]!r}") from None
    except (ValueError, RecursionError) as exc:  # huge integers, deep nesting
        raise CLIError(f"{what} is not usable JSON: {type(exc).__name__}: {str(exc)[:100]}") from None
    if not isinstance(value, dict):
        raise CLIError(f'{what} must be a JSON object, like {{"question": "..."}}; got {type(value).__name__}')
    return value


def _inputs_of(args: argparse.Namespace, program: Any) -> list[str]:
    if args.inputs:
        return [name for part in args.inputs for name in part.split(",") if name]
    named = program.named_predictors()
    if len(named) == 1:
        return list(named[0][1].signature.input_fields)
    raise CLIError("this program has several predictors: name its inputs with --inputs field1,field2")


def _metric(name: str | None) -> Any:
    """The metric ``--metric`` names: a built-in, ``file.py:fn`` or ``package.module:fn``.

    Loaded before any LM work; a file, attribute or value that cannot serve is a UsageError
    (exit status 2). A class is instantiated with no arguments (``oobleck.metrics.ExactMatch``).
    """
    if name is None:
        return None
    if name in METRICS:
        return getattr(importlib.import_module("oobleck.metrics"), name)
    return metric_from(name, builtins=METRICS)


def _option(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise CLIError(f"optimizer option {text!r} must look like name=value")
    try:
        return key, json.loads(raw)
    except (ValueError, RecursionError):
        return key, raw


class _Unpacked:
    """Stands for ``Unpack[...]`` when reading annotations (the search options are added apart)."""

    def __class_getitem__(cls, item: Any) -> Any:
        return Any


def _option_types(cls: type[optimize.Optimizer]) -> dict[str, Any]:
    """The annotated type of each keyword option of ``cls`` (search options included)."""
    from oobleck.optimize._search import SearchKwargs, SearchOptimizer

    init: Any = cls.__init__
    try:
        hints = typing.get_type_hints(init, localns={"Unpack": _Unpacked})
    except Exception:  # noqa: BLE001 - an annotation that cannot be resolved is not checked here
        hints = {}
    params = inspect.signature(init).parameters
    types = {n: hints[n] for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n in hints}
    if any(p.kind is p.VAR_KEYWORD for p in params.values()) and issubclass(cls, SearchOptimizer):
        types.update(typing.get_type_hints(SearchKwargs))
    return types


def _check_options(cls: type[optimize.Optimizer], options: dict[str, Any]) -> None:
    """Refuse an ``-O`` value of the wrong type, not finite, or a negative count (a UsageError)."""
    import pydantic

    types = _option_types(cls)
    for name, value in options.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"-O {name}={value}: expected a finite number")
        if name not in types:
            continue  # the constructor names the options it does not know
        try:
            adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(types[name])
        except Exception:  # noqa: BLE001 - a Python object (an LM, a module): not settable as JSON
            raise UsageError(f"-O {name}: {cls.__name__}'s {name} takes a Python object; set it from Python") from None
        try:
            adapter.validate_python(value, strict=True)
        except pydantic.ValidationError as exc:
            expected = getattr(types[name], "__name__", None) or str(types[name]).replace("typing.", "").replace(
                "collections.abc.", ""
            )
            raise UsageError(
                f"-O {name}={json.dumps(value)}: expected {expected} ({exc.errors()[0]['msg'].lower()})"
            ) from None
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:
            raise UsageError(f"-O {name}={value}: expected a count >= 0")


def _emit(value: Any, *, out: TextIO) -> None:
    out.write(json.dumps(_types.to_jsonable(value), ensure_ascii=False, sort_keys=True) + "\n")
    out.flush()


def _result_data(result: Any) -> Any:
    return dict(result) if hasattr(result, "keys") else result


def inputs_of(args: argparse.Namespace) -> list[str]:
    """The files a command reads (data, artifacts, program files): none may be written over.

    A program spec ``file.py:Class`` names the file; names that are not files are skipped
    when compared.
    """
    found: list[str] = []
    for key in ("train", "val", "data", "jsonl", "artifact", "target", "before", "after", "program", "metric"):
        value = getattr(args, key, None)
        if isinstance(value, str) and value != "-":
            found += [value, value.partition(":")[0]] if key in ("program", "target", "metric") else [value]
    return found


# ---------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace) -> int:
    """Run an artifact on one JSON object of inputs, or on every line of a JSONL file."""
    art = load_artifact(args.artifact, args.program, args.allow_model, args.tools)
    if args.predictor and args.predictor not in art.predictors:
        raise CLIError(f"no predictor {args.predictor!r}; the artifact has {list(art.predictors)}")
    call = art.predictors[args.predictor].__call__ if args.predictor else art.__call__
    accepts = None if args.predictor else _forward_signature(art.program)
    if (args.inputs_json is None) == (args.jsonl is None):
        raise CLIError("give the inputs as one JSON object argument, or --jsonl FILE (- for stdin)")
    rows: Iterator[tuple[int, Any]]
    if args.inputs_json is not None:
        rows = iter([(1, json_object(args.inputs_json, "the inputs"))])
    elif args.jsonl == "-":
        rows = _jsonl_rows("-")  # answered line by line, as stdin brings them
    else:
        rows = enumerate(_read_jsonl(args.jsonl), 1)  # a bad line is refused before any call
    failures = answered = 0
    with _using_lm(args):
        for n, row in rows:
            answered += 1
            try:
                if isinstance(row, CLIError):
                    raise row
                if accepts is not None:
                    _check_inputs(accepts, row, art.program)
                _emit(_result_data(call(**row)), out=sys.stdout)
            except (OobleckError, CLIError) as exc:
                if args.jsonl is None:
                    raise
                failures += 1
                log.warning("row %d failed: %s", n, exc)
                _emit({"error": {"type": type(exc).__name__, "message": str(exc)}}, out=sys.stdout)
    if not answered:
        raise CLIError(f"{args.jsonl} has no rows")
    return 1 if failures else 0


def _forward_signature(program: Any) -> inspect.Signature | None:
    """The parameters of ``program.forward``, when they name its inputs (not ``**inputs``)."""
    try:
        accepts = inspect.signature(program.forward)
    except (TypeError, ValueError):
        return None
    return None if any(p.kind is p.VAR_KEYWORD for p in accepts.parameters.values()) else accepts


def _check_inputs(accepts: inspect.Signature, row: dict[str, Any], program: Any) -> None:
    """An InputError (one row's failure) when ``forward`` cannot take ``row``, not a TypeError that ends the run."""
    try:
        accepts.bind(**row)
    except TypeError as exc:
        names = [n for n, p in accepts.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        raise InputError(f"the inputs do not fit {type(program).__name__}.forward ({exc}); expected {names}") from None


def cmd_inspect(args: argparse.Namespace) -> int:
    """Show the prompts, parameters and provenance stored in an artifact."""
    from oobleck._tool_schema import placeholders
    from oobleck.artifact import load

    with placeholders():  # an agent's tools are described, not needed
        art = load(args.artifact)
    names = [args.predictor] if args.predictor else list(art.predictors)
    for name in names:
        if name not in art.predictors:
            raise CLIError(f"no predictor {name!r}; the artifact has {list(art.predictors)}")
    inputs = json_object(args.inputs, "--inputs") if args.inputs else None
    if args.json:
        data = {
            "artifact": args.artifact,
            "class": art.class_path,
            "runnable": art.runnable,
            "oobleck_version": art.oobleck_version,
            "schema_version": art.schema_version,
            "provenance": art.provenance,
            "adapters": {n: _adapter_data(art.predictors[n], art.adapter_reasons[n]) for n in names},
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
    out += provenance_lines(art.provenance)
    out += _top_candidates(art.provenance, args.top)
    for name in names:
        p = art.predictors[name]
        lm = art.lm_identities[name]
        out += [
            "",
            f"== predictor {name} ==",
            f"signature  {p.signature}",
            f"adapter    {_adapter_shown(p)}    demos {len(p.demos)}    "
            + f"max_retries {p.max_retries if p.max_retries is not None else '-'}",
            f"           ({art.adapter_reasons[name] or 'why: not recorded'})",
            f"config     {json.dumps(p.config, sort_keys=True)}    lm {json.dumps(lm, sort_keys=True) if lm else '-'}",
        ]
        out += trajectory_lines(name, list(p.signature.input_fields), list(p.signature.output_fields), p.demos)
        if p.mode == "score" or (p.mode == "auto" and p.calibration_state is not None):
            state = p.calibration_state
            how = (
                state.describe()
                if state is not None
                else "contextual, estimated on the first call"
                if p.calibration == "contextual"
                else "none"
            )
            out.append(
                f"scoring    labels ranked by likelihood, score_norm {p.score_norm}; calibration {how}"
                + ("" if p.mode == "score" else " (mode auto: on a backend that scores; generated elsewhere)")
            )
        messages = p.render(**inputs) if inputs else art.templates[name]
        for m in messages:
            out += [f"--- {m.role} ---", m.content]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def _adapter_data(p: Any, reason: str | None) -> dict[str, Any]:
    """The adapter of ``inspect --json``: its name and version, whether it is auto, and why."""
    adapter = p.resolve_adapter()
    return {"name": adapter.name, "version": adapter.version, "auto": p.adapter_is_default(), "reason": reason}


def _adapter_shown(p: Any) -> str:
    """The adapter line of ``inspect``: the named one, or "auto" (chosen for the LM at each call)."""
    adapter = p.resolve_adapter()
    if p.adapter_is_default():
        return f"auto (for the LM in use; {adapter.name} v{adapter.version} without one)"
    return f"{adapter.name} v{adapter.version}"


def _top_candidates(provenance: dict[str, Any], top: int) -> list[str]:
    """The best ``top`` candidates an instruction search recorded, one block each."""
    scores = provenance.get("scores")
    candidates = scores.get("candidates") if isinstance(scores, dict) else None
    if not isinstance(candidates, list) or not candidates or top <= 0:
        return []
    if not all(isinstance(c, dict) and "instructions" in c for c in candidates):
        return []
    assert isinstance(scores, dict)
    ranked = sorted(candidates, key=lambda c: -(c.get("score") if c.get("score") is not None else -1.0))
    out = ["", f"== top {min(top, len(ranked))} of {len(ranked)} candidates (score on the valset; * chosen) =="]
    for c in ranked[:top]:
        score = "-" if c.get("score") is None else f"{c['score']:.1f}"
        mark = "*" if c.get("id") == scores.get("best") else " "
        out.append(
            f"{mark} #{c.get('id')} score {score}  {c.get('kind')}  parent {c.get('parent')}  step {c.get('step')}  "
            f"format {c.get('format') or 'default'}  demos {c.get('demos', 0)}"
        )
        for name, text in sorted(c["instructions"].items()):
            out.append(f"    {name}: {text}")
    return out


def cmd_diff(args: argparse.Namespace) -> int:
    """Show the instructions, demos and settings that differ between two artifacts."""
    from oobleck._files import read_regular
    from oobleck.artifact import _schema as schema
    from oobleck.artifact._diff import diff_docs, format_changes

    docs = []
    for path in (args.before, args.after):
        raw = read_regular(path, what="artifact", max_bytes=schema.MAX_BYTES)  # no FIFO, device or huge file
        docs.append(schema.validate(schema.parse_text(raw, source=path), source=path))
    changes = diff_docs(docs[0], docs[1])
    if args.json:
        _emit([c.to_dict() for c in changes], out=sys.stdout)
    else:
        sys.stdout.write(format_changes(changes, before=args.before, after=args.after) + "\n")
    return 1 if changes else 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve an artifact over HTTP (FastAPI on uvicorn) until SIGTERM or Ctrl-C, which finish requests in flight."""
    from oobleck.serve import serve

    art = load_artifact(args.artifact, args.program, args.allow_model, args.tools)
    token = args.token or os.environ.get("OOBLECK_SERVE_TOKEN") or None

    def announce(url: str) -> None:
        sys.stderr.write(
            f"serving {args.artifact} on {url}  (POST / with JSON inputs, schema at /docs; Ctrl-C stops)\n"
        )
        sys.stderr.flush()

    with _using_lm(args):
        serve(
            art,
            host=args.host,
            port=args.port,
            on_listen=announce,
            token=token,
            allow_no_token=args.no_token,
            max_inflight=args.max_inflight,
            conn_timeout=args.conn_timeout,
            max_batch=args.max_batch,
            drain_timeout=args.drain_timeout,
        )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Score an artifact (or a program) on a JSONL dataset with a metric."""
    from oobleck.evaluation import evaluate

    if args.output:
        check_target(args.output)  # before any work: refused now, not after the evaluation ran
    metric = _metric(args.metric)  # before any LM work: a metric that cannot load is a usage error
    if args.target.endswith(".json"):
        art = load_artifact(args.target, args.program, args.allow_model, args.tools)
        program, runner = art.program, art
    else:
        program = runner = program_from(args.target, cot=args.cot)
    rows = _read_jsonl(args.data, inputs=_inputs_of(args, program))
    with _using_lm(args):
        result = evaluate(
            runner,
            rows,
            metric,
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
    if not args.dry_run and not args.output:
        raise CLIError("name the artifact to write with --output FILE.json (or use --dry-run)")
    # Checked before compiling: a compile is never spent on an artifact that cannot be written,
    # and neither the artifact nor the checkpoint may be one of the inputs (or each other).
    if (
        args.output
        and args.checkpoint
        and not os.path.lexists(args.output)
        and os.path.realpath(args.output) == os.path.realpath(args.checkpoint)
    ):
        # check_target below refuses this for a file that exists; a new path named twice would
        # be found only after the compile, with the checkpoint written where the artifact goes
        raise CLIError(f"--output and --checkpoint name one file ({args.output}); give each its own path")
    if args.output:
        check_target(args.output, inputs=[args.checkpoint])
    if args.checkpoint and os.path.isdir(os.path.dirname(os.path.abspath(args.checkpoint))):
        check_target(args.checkpoint, inputs=[args.output])  # (a missing folder is made when saving)
    metric = _metric(args.metric)  # before any LM work: a metric that cannot load is a usage error
    program = program_from(args.program, cot=args.cot)
    inputs = _inputs_of(args, program)
    train = _read_jsonl(args.train, inputs=inputs)
    val = _read_jsonl(args.val, inputs=inputs) if args.val else None
    options = dict(_option(o) for o in args.option)
    cls = OPTIMIZERS[args.optimizer]
    _check_options(cls, options)
    if args.max_lm_calls is not None:
        options["max_lm_calls"] = args.max_lm_calls
    if args.max_tokens is not None:
        options["max_tokens"] = args.max_tokens
    if cls.needs_metric and metric is None:
        raise CLIError(
            f"--optimizer {args.optimizer} scores candidates: pass --metric ({', '.join(METRICS)}, "
            "file.py:fn or package.module:fn)"
        )
    if args.prompt_lm is not None:
        if cls.prompt_lm_option is None:
            writers = sorted(n for n, c in OPTIMIZERS.items() if c.prompt_lm_option is not None)
            raise CLIError(f"--prompt-lm is for the instruction optimizers ({', '.join(writers)})")
        options[cls.prompt_lm_option] = _lm_from(args.prompt_lm, args.base_url)
    make: Callable[..., optimize.Optimizer] = cls  # the constructors differ; --option names are checked there
    try:
        optimizer = make(metric, **options) if cls.needs_metric else make(**options)
    except (TypeError, ValueError) as exc:  # ConfigError included: an option out of range
        raise UsageError(f"bad option for {cls.__name__}: {exc}") from None
    if args.dry_run:
        estimate = optimizer.compile(program, trainset=train, valset=val, seed=args.seed, dry_run=True)
        sys.stderr.write(f"{cls.__name__}: {estimate}\n")
        _emit(estimate.to_dict(), out=sys.stdout)
        return 0
    with _using_lm(args):
        sys.stderr.write(f"compiling with {cls.__name__} on {len(train)} rows...\n")
        compiled = optimizer.compile(program, trainset=train, valset=val, seed=args.seed, checkpoint=args.checkpoint)
        # Saved inside the context, so the artifact records the adapter and LM the compile used.
        with protecting([args.checkpoint]):
            compiled.save(args.output)
    provenance = getattr(compiled, "provenance", {}) or {}
    summary = optimize.CompileSummary.of(compiled) if provenance else None
    for line in summary.lines() if summary is not None else []:
        sys.stderr.write(line + "\n")
    sys.stderr.write(f"saved {args.output}  (oobleck report {args.output} -o report.html: the page to read)\n")
    _emit(
        {
            "output": args.output,
            "optimizer": cls.__name__,
            "scores": provenance.get("scores"),
            "summary": None if summary is None else summary.to_dict(),
        },
        out=sys.stdout,
    )
    return 0
