"""TransformersLM: any local causal LM run in-process by Hugging Face ``transformers``.

It loads a local model folder, or the packaged SmolLM2 from its GGUF file (dequantized once,
which takes about a minute, then cached as safetensors). Requests that arrive together from
several threads run as one padded batch; it scores given completions
(``LMRequest.score``) and applies trained soft prompts (``LMRequest.soft_prompt``), which no
HTTP backend can do. torch and transformers are imported here only, on first use
(``pip install 'oobleck[transformers]'``, after the CPU build of torch).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oobleck._files import cache_dir as _cache_dir
from oobleck.errors import ConfigError, LMResponseError
from oobleck.lm._policy import check_decoding
from oobleck.lm.base import BaseLM, Capabilities, TextSink, text_sink
from oobleck.lm.soft_prompt import SoftPrompt
from oobleck.lm.types import Choice, LMRequest, LMResponse, Message, TokenLogprob, Usage

__all__ = ["TransformersLM", "default_model_dir"]

log = logging.getLogger(__name__)

_EXTRA = (
    "TransformersLM needs torch and transformers: install the CPU build of torch first "
    "(pip install torch --index-url https://download.pytorch.org/whl/cpu), then "
    "pip install 'oobleck[transformers]'"
)


def _torch() -> Any:
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"{_EXTRA} ({exc})") from exc
    return torch


def default_model_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The packaged SmolLM2 as a transformers folder, converted from its GGUF on first use.

    Dequantizing the GGUF takes 40-80 s on a laptop CPU; the result (about 540 MB of
    float32 safetensors plus the tokenizer) is kept under ``cache_dir`` (default: the oobleck
    cache directory, ``$OOBLECK_CACHE_DIR`` or ``~/.cache/oobleck``) and reused by every later
    process. Concurrent first loads wait for one conversion.

    Raises:
        ConfigError: the embedded model or the transformers extra is not installed.
    """
    from oobleck.lm.local import default_model_path

    gguf = default_model_path()
    target = _cache_dir("models", root=cache_dir) / f"{gguf.stem}-{gguf.stat().st_size}"
    if (target / "config.json").is_file():
        return target
    _torch()
    if not _gguf_installed():
        raise ConfigError(
            f"converting the packaged model ({gguf.name}) for TransformersLM needs the gguf package: "
            "pip install 'oobleck[transformers]' (or pip install gguf), or pass TransformersLM(model=<folder>)"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with _file_lock(target.parent / f".{target.name}.lock") as locked:
            if (target / "config.json").is_file():
                return target
            # Holding the lock, any temporary folder left here is from a converter that died.
            for stale in target.parent.glob(f".{target.name}.*") if locked else ():
                if stale.is_dir():
                    shutil.rmtree(stale, ignore_errors=True)
            log.warning("oobleck: converting %s to safetensors once (40-80 s); cached in %s", gguf.name, target)
            started = time.perf_counter()
            tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
            try:
                try:
                    _convert_gguf(gguf, tmp)
                except (OSError, ValueError, ImportError) as exc:
                    raise ConfigError(f"converting {gguf} to safetensors in {tmp} failed: {exc}") from exc
                os.replace(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            log.warning("oobleck: converted %s in %.0f s", gguf.name, time.perf_counter() - started)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the converted model under {target.parent} ({exc}); make it writable, or point "
            "OOBLECK_CACHE_DIR (or TransformersLM(cache_dir=...)) at a writable folder"
        ) from exc
    return target


def _gguf_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("gguf") is not None


def _convert_gguf(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are dequantized to float32 now; what is saved is a plain model.
    model.hf_quantizer = None  # type: ignore[assignment]  # transformers types it as never None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[bool]:
    """Hold an exclusive lock on ``path``; yields whether it is a real cross-process lock."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no cross-process lock, conversion is atomic anyway
        yield False
        return
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass(slots=True)
class _Job:
    request: LMRequest
    future: Future[LMResponse]
    #: Where the text goes as it is decoded (the caller streams), else None.
    sink: TextSink | None = None


class TransformersLM(BaseLM):
    """A causal LM run in this process by ``transformers`` (CPU or GPU).

    Args:
        model: a local model folder (``config.json``, weights, tokenizer with a chat template);
            default: the packaged SmolLM2-135M-Instruct, converted once from its GGUF.
        device: a torch device (``"cpu"``, ``"cuda"``).
        dtype: ``"float32"`` (default), ``"bfloat16"`` or ``"float16"``.
        max_batch_size: how many requests run together at most.
        batch_wait_s: how long the batcher waits for more requests after the first arrives.
        n_threads: torch CPU threads, set process-wide when the model loads (default: half the
            CPUs, at least 1: on a shared machine a second thread that has to wait for a busy
            core makes every step several times slower, as with LocalLM).
        cache_dir: where the converted packaged model is kept (see :func:`default_model_dir`).
        **defaults: decoding defaults (temperature, max_tokens, top_p, seed, stop).

    Requests from threads that call at about the same time (an evaluation's worker threads)
    are put in one queue; a single worker runs them as padded batches, generation and
    scoring apart, grouped by soft prompt. Sampling uses a generator per row seeded from
    ``seed`` (default 0) and ``sample_index``, so a seeded request returns the same text
    whatever else shares its batch (greedy rows can differ in the last float bits between a
    batch and a single run, which can flip a near-tie).

    Under ``program.stream(...)`` each row's text is sent on as it is decoded, token by token
    (minus half a character or half a stop string, which may still change); a consumer that
    stops reading stops its row, not the others in the batch.

    Example:
        >>> lm = TransformersLM(temperature=0)                     # doctest: +SKIP
        >>> lm("Say hi")                                           # doctest: +SKIP
    """

    capabilities = Capabilities(json_schema=False, logprobs=True, n=True, scoring=True, soft_prompts=True)

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        max_batch_size: int = 8,
        batch_wait_s: float = 0.01,
        n_threads: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        **defaults: Any,
    ) -> None:
        if model is not None and not (Path(model) / "config.json").is_file():
            raise ConfigError(f"no transformers model folder at {model} (it needs a config.json); pass a local folder")
        if dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"dtype must be 'float32', 'bfloat16' or 'float16', got {dtype!r}")
        if max_batch_size < 1:
            raise ConfigError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if n_threads is not None and n_threads < 0:
            raise ConfigError(f"n_threads must be at least 1 (or 0/None: half the CPUs), got {n_threads}")
        unknown = set(defaults) - {"temperature", "max_tokens", "top_p", "seed", "stop"}
        if unknown:
            raise ConfigError(
                f"unknown decoding default(s) {sorted(unknown)}; known: temperature, max_tokens, top_p, seed, stop"
            )
        self._model_arg = Path(model) if model is not None else None
        self.device = device
        self.dtype = dtype
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_s
        self.n_threads = n_threads or max(1, (os.cpu_count() or 2) // 2)
        self.cache_dir = cache_dir
        check_decoding(defaults, "TransformersLM")
        self.defaults = defaults
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any] | None = None
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._soft: OrderedDict[str, Any] = OrderedDict()
        self._identity: dict[str, str] | None = None
        self._prefixes: Any = None

    # ---- the model ----

    @property
    def model_dir(self) -> Path:
        """The transformers folder in use (converting the packaged model on first access)."""
        if self._model_arg is None:
            self._model_arg = default_model_dir(self.cache_dir)
        return self._model_arg

    @property
    def identity(self) -> dict[str, str]:
        """Backend, model folder name and a digest of its config and weight sizes."""
        if self._identity is None:
            self._identity = self._compute_identity()
        return dict(self._identity)

    def _compute_identity(self) -> dict[str, str]:
        folder = self.model_dir
        digest = hashlib.sha256((folder / "config.json").read_bytes())
        for weights in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
            digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
        return {"backend": "transformers", "model": folder.name, "digest": digest.hexdigest()[:16], "dtype": self.dtype}

    def load(self) -> tuple[Any, Any]:
        """The (model, tokenizer) pair, loaded on first use; the model is frozen (no gradients)."""
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    self._loaded = self._load()
        return self._loaded

    def _load(self) -> tuple[Any, Any]:
        torch = _torch()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = self.model_dir
        torch.set_num_threads(self.n_threads)
        from safetensors import SafetensorError

        try:
            tokenizer = AutoTokenizer.from_pretrained(folder)
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, self.dtype))
        except (OSError, ValueError, SafetensorError) as exc:
            raise ConfigError(
                f"transformers could not load {folder}: {exc} (a weights file cut short by an interrupted copy or "
                "download reads like this: copy the model folder again)"
                if isinstance(exc, SafetensorError)
                else f"transformers could not load {folder}: {exc}"
            ) from exc
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(f"the tokenizer in {folder} has no chat template; TransformersLM needs a chat model")
        try:
            model.to(self.device).eval()  # type: ignore[arg-type]  # transformers' stub wants a torch.device; a str works
        except (RuntimeError, AssertionError) as exc:  # torch: an unknown device, or one this build lacks
            raise ConfigError(
                f"device {self.device!r} cannot be used here ({exc}); pass device='cpu' or a device this "
                "torch build and machine have"
            ) from exc
        from oobleck.lm import _hf_runtime as rt

        self._prefixes = rt.PrefixCache()
        model.requires_grad_(False)
        return model, tokenizer

    @property
    def model(self) -> Any:
        """The loaded ``transformers`` model (frozen)."""
        return self.load()[0]

    @property
    def tokenizer(self) -> Any:
        """The loaded tokenizer."""
        return self.load()[1]

    def chat_text(self, messages: tuple[Message, ...] | list[Message], *, generation_prompt: bool = True) -> str:
        """The messages rendered by the model's chat template (text, special tokens included)."""
        rows = [{"role": m.role, "content": m.content} for m in messages]
        return str(self.tokenizer.apply_chat_template(rows, add_generation_prompt=generation_prompt, tokenize=False))

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (special-token markup in it is read as special tokens)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_ids(
        self, messages: tuple[Message, ...] | list[Message], soft_prompt: SoftPrompt | None = None
    ) -> list[int]:
        """The input token ids for ``messages``, without the part a covering soft prompt replaces."""
        text = self.chat_text(messages)
        if soft_prompt is not None and soft_prompt.covers:
            soft_prompt.split(messages)  # checks the covered messages are the trained ones
            head = self.chat_text(messages[: soft_prompt.covers], generation_prompt=False)
            if not text.startswith(head):
                raise ConfigError(
                    "this model's chat template does not render the covered messages as a prefix; "
                    "soft prompts that replace messages need a template that renders them in order"
                )
            text = text[len(head) :]
        return self.encode(text)

    def _applied(self, prompt: SoftPrompt | None) -> Any:
        from oobleck.lm import _hf_runtime as rt

        if prompt is None:
            return None
        mine = self.identity
        if prompt.base_model and prompt.base_model.get("digest") not in (None, mine["digest"]):
            raise ConfigError(
                f"{prompt!r} was trained on model {prompt.base_model.get('model')!r} "
                f"(digest {prompt.base_model.get('digest')}), not on this one ({mine['model']}, {mine['digest']})"
            )
        with self._lock:
            hit = self._soft.get(prompt.sha256)
            if hit is None:
                hit = self._soft[prompt.sha256] = rt.applied(prompt, self.model)
                while len(self._soft) > 8:
                    self._soft.popitem(last=False)
            return hit

    # ---- calls ----

    def complete(self, request: LMRequest) -> LMResponse:
        """Generate or score; concurrent calls run together as one batch."""
        if request.response_format is not None:
            raise ConfigError("TransformersLM does not constrain output to a JSON schema; use the chat adapter")
        if request.tools is not None:
            raise ConfigError(
                "TransformersLM has no native tool calling (capabilities.tool_calls is False) and would answer "
                "as if the tools had not been sent; ReAct on TransformersLM asks for its action in text instead"
            )
        if request.extra:
            raise ConfigError(
                f"TransformersLM takes no backend-specific parameters; got extra={sorted(request.extra)} "
                "(it supports temperature, top_p, max_tokens, stop, seed, n, logprobs, top_logprobs)"
            )
        self.load()
        job = _Job(request, Future(), text_sink(request))
        self._queue.put(job)
        self._ensure_worker()
        return job.future.result()

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._serve, name="oobleck-transformers-batcher", daemon=True)
                self._worker.start()

    def _serve(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            deadline = time.monotonic() + self.batch_wait_s
            while len(jobs) < self.max_batch_size:
                try:
                    job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if job is None:
                    self._queue.put(None)
                    break
                jobs.append(job)
            groups: dict[tuple[str, str], list[_Job]] = {}
            for job in jobs:
                sp = job.request.soft_prompt
                kind = "score" if job.request.score is not None else "generate"
                groups.setdefault((kind, sp.sha256 if sp else ""), []).append(job)
            for (kind, _), group in groups.items():
                self._run(kind, group)

    def _run(self, kind: str, jobs: list[_Job]) -> None:
        torch = _torch()
        started = time.perf_counter()
        try:
            with torch.inference_mode():
                soft = self._applied(jobs[0].request.soft_prompt)
                results = self._score(jobs, soft) if kind == "score" else self._generate(jobs, soft)
        except Exception as exc:  # noqa: BLE001 - handed to every waiting caller
            if len(jobs) > 1:  # one bad request must not fail the others: run them alone
                for job in jobs:
                    self._run(kind, [job])
                return
            error = (
                exc
                if isinstance(exc, (ConfigError, LMResponseError))
                else LMResponseError(f"transformers failed on this request: {type(exc).__name__}: {exc}")
            )
            jobs[0].future.set_exception(error)
            return
        latency = time.perf_counter() - started
        for job, response in zip(jobs, results):
            if isinstance(response, BaseException):  # its stream's consumer left: that row stopped
                job.future.set_exception(response)
                continue
            job.future.set_result(response.model_copy(update={"usage": response.usage.with_latency(latency)}))

    def _ids(self, request: LMRequest) -> list[int]:
        ids = self.prompt_ids(request.messages, request.soft_prompt)
        limit = int(getattr(self.model.config.get_text_config(), "max_position_embeddings", 0) or 0)
        soft = request.soft_prompt
        # virtual token embeddings take positions before the input (a kv prefix takes none)
        virtual = soft.num_virtual_tokens if soft is not None and soft.kind == "embeddings" else 0
        if limit and len(ids) + virtual >= limit:
            with_soft = f" after the soft prompt's {virtual} virtual tokens" if virtual else ""
            raise ConfigError(f"the prompt has {len(ids)} tokens{with_soft}; this model reads at most {limit}")
        return ids

    def _score(self, jobs: list[_Job], soft: Any) -> list[LMResponse]:
        from oobleck.lm import _hf_runtime as rt

        prompts, completions, texts = [], [], []
        for job in jobs:
            score = job.request.score
            options = (score,) if isinstance(score, str) else tuple(score or ())
            if not options:
                raise ConfigError("LMRequest.score needs at least one completion to score")
            prompts.append(self._ids(job.request))
            completions.append([self.encode(t) for t in options])
            texts.append(options)
        values = rt.score(self.model, prompts, completions, soft, self._pad_id(), self._prefixes, self._soft_key(jobs))
        out = []
        for prompt, comps, opts, logps in zip(prompts, completions, texts, values):
            choices = tuple(
                Choice(
                    text=text,
                    finish_reason="score",
                    logprobs=tuple(
                        TokenLogprob(token=self.tokenizer.decode([t]), logprob=lp) for t, lp in zip(ids, lps)
                    ),
                )
                for text, ids, lps in zip(opts, comps, logps)
            )
            usage = Usage(calls=1, prompt_tokens=len(prompt) + sum(len(c) for c in comps))
            out.append(LMResponse(choices=choices, usage=usage, model=self.model_dir.name))
        return out

    def _generate(self, jobs: list[_Job], soft: Any) -> list[LMResponse | BaseException]:
        torch = _torch()
        from oobleck.lm import _hf_runtime as rt

        rows: list[rt.GenRow] = []
        owners: list[int] = []
        for j, job in enumerate(jobs):
            req = job.request
            ids = self._ids(req)
            temperature = self._param(req, "temperature", 0.0)
            seed = int(self._param(req, "seed", 0))
            stop = tuple(req.stop if req.stop is not None else self.defaults.get("stop") or ())
            for k in range(req.n):
                generator = None
                if temperature > 0:
                    generator = torch.Generator().manual_seed(hash((seed, req.sample_index, k)) & 0x7FFFFFFF)
                rows.append(
                    rt.GenRow(
                        ids=ids,
                        max_new=int(self._param(req, "max_tokens", 256)),
                        temperature=float(temperature),
                        top_p=float(self._param(req, "top_p", 1.0)),
                        generator=generator,
                        stop=stop,
                        top_logprobs=int(req.top_logprobs or 0),
                        on_text=job.sink,
                    )
                )
                owners.append(j)
        tokenizer = self.tokenizer
        rt.generate(
            self.model, tokenizer, rows, soft, self._pad_id(), self._eos_ids(), self._prefixes, self._soft_key(jobs)
        )
        out: list[LMResponse | BaseException] = []
        for j, job in enumerate(jobs):
            mine = [r for r, o in zip(rows, owners) if o == j]
            failed = next((r.failed for r in mine if r.failed is not None), None)
            if failed is not None:
                out.append(failed)
                continue
            choices = tuple(
                Choice(
                    text=r.text, finish_reason=r.finish, logprobs=self._logprobs(r) if job.request.logprobs else None
                )
                for r in mine
            )
            usage = Usage(calls=1, prompt_tokens=len(mine[0].ids), completion_tokens=sum(len(r.logprobs) for r in mine))
            out.append(LMResponse(choices=choices, usage=usage, model=self.model_dir.name))
        return out

    def _logprobs(self, row: Any) -> tuple[TokenLogprob, ...]:
        decode = self.tokenizer.decode
        return tuple(
            TokenLogprob(token=decode([t]), logprob=lp, top=tuple((decode([a]), b) for a, b in top))
            for t, lp, top in row.logprobs
        )

    @staticmethod
    def _soft_key(jobs: list[_Job]) -> str:
        prompt = jobs[0].request.soft_prompt
        return prompt.sha256 if prompt is not None else ""

    def _param(self, request: LMRequest, name: str, default: Any) -> Any:
        value = getattr(request, name)
        if value is None:
            value = self.defaults.get(name, default)
        return default if value is None else value

    def _pad_id(self) -> int:
        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        return int(pad if pad is not None else 0)

    def _eos_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id}
        configured = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        if isinstance(configured, int):
            ids.add(configured)
        elif isinstance(configured, (list, tuple)):
            ids.update(configured)
        return {int(i) for i in ids if i is not None}

    def close(self) -> None:
        """Stop the batching thread and free the model (it loads again on the next call)."""
        worker = self._worker
        if worker is not None and worker.is_alive():
            self._queue.put(None)
            worker.join(timeout=30)
        with self._lock:
            self._worker = None
            self._loaded = None
            self._soft.clear()
            self._prefixes = None
            self._queue = queue.Queue()
