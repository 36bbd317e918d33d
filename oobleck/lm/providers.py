"""LMs by name: ``LM("openai/gpt-4o-mini")`` builds the backend a provider string names.

The grammar of a spec (``oobleck.LM(spec)``, and the CLI's ``--lm``)::

    local                      the embedded model (SmolLM2-135M-Instruct, in-process): LocalLM()
    local:PATH.gguf            the embedded runtime on your own GGUF file: LocalLM(PATH)
    PROVIDER/MODEL             MODEL at PROVIDER's endpoint, with PROVIDER's key variable
    PROVIDER/MODEL@URL         the same provider (its key and capabilities) at another endpoint:
                               a proxy, a vLLM on another machine ("vllm/Qwen/Qwen2.5-7B@http://gpu:8000/v1")
    URL                        any OpenAI-compatible server that serves one model at URL
                               (llama.cpp's llama-server, LocalLM.serve()); the model field sent is
                               "default", which such a server ignores. A vLLM server checks the
                               model name: name it with vllm/MODEL@URL.

``PROVIDER`` is the text before the first ``/``, so a model name may hold ``/``, ``:`` and
``@`` (``ollama/llama3.2:1b``, ``vllm/Qwen/Qwen2.5-1.5B-Instruct``); only a trailing
``@http://...`` or ``@https://...`` is read as the endpoint. ``openai:MODEL`` (the CLI's older
spelling) is read as ``openai/MODEL``.

==========  ===============================================  ===================================  =============
provider    endpoint (default)                               key, first set wins                  capabilities
==========  ===============================================  ===================================  =============
openai      https://api.openai.com/v1 (``$OPENAI_BASE_URL``)  OPENAI_API_KEY (required)            schema, logprobs, n
anthropic   https://api.anthropic.com/v1/                    ANTHROPIC_API_KEY (required)         none
gemini      https://generativelanguage.googleapis.com/       GEMINI_API_KEY, GOOGLE_API_KEY       schema
            v1beta/openai/                                   (required)
ollama      http://localhost:11434/v1 (``$OLLAMA_HOST``)      none                                 schema
vllm        http://localhost:8000/v1                         VLLM_API_KEY (optional)              schema, logprobs, n
==========  ===============================================  ===================================  =============

Every one of them is an :class:`~oobleck.lm.openai.OpenAILM` on that provider's OpenAI-compatible
endpoint: the same retries, deadlines, budget counting, usage and error translation for all.
The capabilities column is what each endpoint honours, so the default adapter asks only for what
the server does: Anthropic's compatibility layer ignores ``response_format`` and ``logprobs`` and
takes ``n=1`` only, so programs on it use the chat format; Gemini's takes a JSON schema but no
log-probabilities. Pass ``capabilities=`` to override. A key is required only at a provider's
own endpoint; at an endpoint you name (``@URL``) a missing key is sent as a placeholder, as
``OpenAILM(base_url=...)`` does. A provider's key is sent only to its endpoint: ``ollama`` and a
bare URL never receive ``$OPENAI_API_KEY``.

Why a table and not a routing package (litellm, any-llm-sdk): import cost first. CPU seconds
of the import in a fresh CPython 3.11.7 with warm ``.pyc`` files, best of 5, on this 2-core
machine under load from other jobs (``DEVELOPERS.md``, "A backend", has the table, the wall
times and the commands): ``import litellm`` (1.110.2) 3.56 s and 2,935 modules,
``import any_llm`` (1.40.2, with its openai, anthropic, gemini and ollama extras) 1.48 s and
2,193 modules, ``import openai`` 0.55 s and 772 modules, ``import oobleck`` 0.16 s and 190
modules; ``oobleck.LM("anthropic/...")`` adds the openai SDK on first use (0.64 s, 885 modules
in all). A router would cost 2.7 to 6.5 times the openai SDK's CPU time, in every process
that names a model. Then fidelity: a router speaks each
vendor's native API, so it reaches features the compatibility layers drop (Anthropic's
structured output, Gemini's own schema dialect), but it brings its own retries, timeouts and
cost accounting, which would sit beside oobleck's counted retries, per-attempt deadlines,
budgets and key scrubbing rather than under them. The providers named here all publish
OpenAI-compatible endpoints, so the table keeps one tested code path and declares in each row
what its endpoint ignores. A provider with no such endpoint is a new
:class:`~oobleck.lm.base.BaseLM` (see ``DEVELOPERS.md``, "A backend"), which may wrap a router.
"""

from __future__ import annotations

import os
import re
import types
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oobleck.errors import ConfigError
from oobleck.lm.base import Capabilities

if TYPE_CHECKING:
    from oobleck.lm.local import LocalLM
    from oobleck.lm.openai import OpenAILM

__all__ = ["LM", "PROVIDERS", "Provider", "Spec", "parse_spec"]

#: The model name sent to a bare URL (a single-model server such as llama.cpp's ignores it).
URL_MODEL = "default"

_KEY_PLACEHOLDER = "unused"  # the openai client needs some key; servers that check none ignore it


@dataclass(frozen=True, slots=True)
class Provider:
    """One row of the provider table: an OpenAI-compatible endpoint and how to authenticate.

    Attributes:
        name: the prefix of a spec (``"anthropic"`` in ``"anthropic/claude-..."``).
        base_url: the endpoint's default base URL.
        key_env: environment variables that hold the key, tried in order.
        key_required: whether a call at ``base_url`` needs a key (a ConfigError names
            ``key_env`` when none is set).
        capabilities: what the endpoint honours (see :class:`~oobleck.lm.base.Capabilities`).
        url_env: an environment variable that, when set, replaces ``base_url``.
    """

    name: str
    base_url: str
    key_env: tuple[str, ...]
    key_required: bool
    capabilities: Capabilities
    url_env: str | None = None


_FULL = Capabilities(json_schema=True, logprobs=True, n=True)

#: The providers a spec may name (read-only).
PROVIDERS: Mapping[str, Provider] = types.MappingProxyType(
    {
        p.name: p
        for p in (
            Provider("openai", "https://api.openai.com/v1", ("OPENAI_API_KEY",), True, _FULL, "OPENAI_BASE_URL"),
            Provider("anthropic", "https://api.anthropic.com/v1/", ("ANTHROPIC_API_KEY",), True, Capabilities()),
            Provider(
                "gemini",
                "https://generativelanguage.googleapis.com/v1beta/openai/",
                ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
                True,
                Capabilities(json_schema=True),
            ),
            Provider("ollama", "http://localhost:11434/v1", (), False, Capabilities(json_schema=True), "OLLAMA_HOST"),
            Provider("vllm", "http://localhost:8000/v1", ("VLLM_API_KEY",), False, _FULL),
        )
    }
)

_FORMS = (
    "'local', 'local:PATH.gguf', 'PROVIDER/MODEL', 'PROVIDER/MODEL@http://host:port/v1' or a server URL "
    f"'http://host:port/v1'; PROVIDER is one of {', '.join(PROVIDERS)}"
)
_ENDPOINT = re.compile(r"@([a-z][a-z0-9+.-]*://\S*)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Spec:
    """A parsed spec (what :func:`parse_spec` returns).

    Attributes:
        kind: ``"local"``, ``"provider"`` or ``"url"``.
        model: the model name sent (None for ``local``).
        provider: the provider's row, for ``PROVIDER/MODEL`` specs.
        base_url: the endpoint the spec names (``@URL`` or a bare URL), else None.
        path: the GGUF file of ``local:PATH``.
    """

    kind: str
    model: str | None = None
    provider: Provider | None = None
    base_url: str | None = None
    path: str | None = None


def parse_spec(spec: str) -> Spec:
    """Read an LM spec (see the module docstring); no environment, file or network is touched.

    Raises:
        ConfigError: the spec names no known form or provider, or its URL is not an http(s) URL.
    """
    if not isinstance(spec, str):
        raise ConfigError(f"an LM spec is a string such as 'openai/gpt-4o-mini', got {type(spec).__name__}")
    text = spec.strip()
    if text == "local":
        return Spec("local")
    if text.startswith("local:"):
        path = text[len("local:") :]
        if not path:
            raise ConfigError("'local:' needs a GGUF file after the colon, e.g. local:/models/qwen.gguf")
        return Spec("local", path=path)
    if re.match(r"https?://", text, re.IGNORECASE):
        return Spec("url", model=URL_MODEL, base_url=_checked_url(text, spec))
    if text.startswith("openai:"):
        text = "openai/" + text[len("openai:") :]  # the CLI's older spelling
    name, slash, rest = text.partition("/")
    if not slash:
        raise ConfigError(f"LM spec {spec!r} is not understood; expected {_FORMS}")
    provider = PROVIDERS.get(name.lower())
    if provider is None:
        raise ConfigError(f"unknown LM provider {name!r} in {spec!r}; expected {_FORMS}")
    base_url = None
    found = _ENDPOINT.search(rest)
    if found:
        base_url = _checked_url(found.group(1), spec)
        rest = rest[: found.start()]
    if not rest:
        raise ConfigError(f"LM spec {spec!r} names no model; write it as {provider.name}/MODEL")
    return Spec("provider", model=rest, provider=provider, base_url=base_url)


def _checked_url(url: str, spec: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"LM spec {spec!r}: {url!r} is not an http(s) URL with a host")
    if parts.username or parts.password:
        raise ConfigError(f"LM spec {spec!r}: put no credentials in the URL; pass api_key= or set the key variable")
    return url


def LM(  # noqa: N802 - named like the class it stands for, as dspy.LM is
    spec: str, /, *, base_url: str | None = None, api_key: str | None = None, **options: Any
) -> OpenAILM | LocalLM:
    """The backend a spec names: ``"openai/gpt-4o-mini"``, ``"anthropic/..."``, ``"local"``, ...

    See the module docstring for the grammar, the provider table and where keys come from.
    ``oobleck.LM`` is this function; ``oobleck.lm.LM`` is the protocol every backend
    implements (what annotations name).

    Args:
        spec: what to talk to.
        base_url: an endpoint that replaces the spec's (the CLI's ``--base-url``); for
            ``PROVIDER/MODEL`` specs and URLs only.
        api_key: the key; by default the provider's environment variable. It is sent only in
            the ``Authorization`` header and never appears in identities, reprs, caches,
            artifacts, logs or error messages.
        **options: passed to the backend: decoding defaults (``temperature=0``,
            ``max_tokens=256``) and :class:`~oobleck.lm.openai.OpenAILM` or
            :class:`~oobleck.lm.local.LocalLM` settings (``timeout``, ``capabilities``,
            ``http_client``, ``n_parallel``, ...).

    Returns:
        An :class:`~oobleck.lm.openai.OpenAILM`, or a :class:`~oobleck.lm.local.LocalLM` for
        ``local`` specs.

    Raises:
        ConfigError: an unknown provider or form, or a missing key (the message names the
            environment variable to set).

    Example:
        >>> lm = oobleck.LM("openai/gpt-4o-mini", temperature=0)        # doctest: +SKIP
        >>> lm = oobleck.LM("ollama/llama3.2:1b")                        # doctest: +SKIP
        >>> lm = oobleck.LM("vllm/Qwen/Qwen2.5-1.5B-Instruct@http://gpu:8000/v1")  # doctest: +SKIP
    """
    parsed = parse_spec(spec)
    if parsed.kind == "local":
        if base_url is not None or api_key is not None:
            raise ConfigError(f"{spec!r} runs in this process: it takes no base_url or api_key")
        from oobleck.lm.local import LocalLM

        return LocalLM(parsed.path, **options)
    from oobleck.lm.openai import OpenAILM

    assert parsed.model is not None
    if base_url is not None:
        base_url = _checked_url(base_url, spec)
    if parsed.kind == "url":
        url = base_url or parsed.base_url
        return OpenAILM(parsed.model, base_url=url, api_key=api_key or _KEY_PLACEHOLDER, **options)
    provider = parsed.provider
    assert provider is not None
    named = base_url or parsed.base_url  # an endpoint the user chose
    env_url = os.environ.get(provider.url_env) if provider.url_env else None
    url = named or (_ollama_url(env_url) if provider.name == "ollama" and env_url else env_url) or provider.base_url
    key = api_key or next((os.environ[v] for v in provider.key_env if os.environ.get(v)), None)
    if key is None:
        if provider.key_required and not named and not (provider.name == "openai" and env_url):
            raise ConfigError(
                f"{spec!r} needs an API key: set {' or '.join(provider.key_env)} in the environment, "
                "or pass api_key=... (it is never saved or logged)"
            )
        key = _KEY_PLACEHOLDER
    options.setdefault("capabilities", provider.capabilities)
    return OpenAILM(parsed.model, base_url=url, api_key=key, **options)


def _ollama_url(host: str) -> str:
    """Ollama's ``OLLAMA_HOST`` (``host:port`` or a URL) as the base URL of its OpenAI API."""
    url = host if re.match(r"https?://", host, re.IGNORECASE) else f"http://{host}"
    url = url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"
