"""KNNFewShot: a program whose demos are, for each input, the nearest training rows.

The pool of rows and their embeddings are computed once, when the module is built. At
inference it embeds the new input (no LM call), picks the ``k`` most similar rows by cosine
similarity and runs a copy of the wrapped program with those rows as every predictor's demos.
The pool, the embeddings and the embedder's config are saved with the program (see
``dump_extra``/``load_extra``), so a loaded KNN program needs no recomputation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from oobleck.adapters._values import format_value
from oobleck.errors import ConfigError
from oobleck.example import Example, from_data, to_data
from oobleck.module import Module, RenderedCall

if TYPE_CHECKING:
    import numpy as np

    from oobleck.retrieve.embedders import Embedder

__all__ = ["KNNFewShot", "query_text"]


def query_text(inputs: Mapping[str, Any], fields: Sequence[str] | None = None) -> str:
    """The text embedded for a row's inputs: one ``name: value`` line per input field."""
    names = list(fields) if fields is not None else list(inputs)
    return "\n".join(f"{name}: {format_value(type(inputs[name]), inputs[name])}" for name in names if name in inputs)


class KNNFewShot(Module):
    """Run ``program`` with the ``k`` training rows most similar to each input as demos.

    Args:
        program: the program to wrap (copied; the original is not changed).
        trainset: the pool of demos (Examples with inputs marked).
        k: demos per call.
        embedder: an :class:`~oobleck.retrieve.embedders.Embedder`; default: HashingEmbedder().
        input_fields: the input fields compared (default: each row's inputs).

    Raises:
        ConfigError: an empty pool, rows without inputs, or ``k`` not an int >= 1.

    Example:
        >>> from oobleck import Example, FakeLM, Predict
        >>> rows = [Example(text=t, label=l).with_inputs("text") for t, l in
        ...         [("great movie", "pos"), ("awful film", "neg"), ("great fun", "pos")]]
        >>> knn = KNNFewShot(Predict("text -> label", lm=FakeLM([{"label": "pos"}])), trainset=rows, k=2)
        >>> [rows[i].text for i in knn.neighbours(text="a great movie")]
        ['great movie', 'great fun']
    """

    def __init__(
        self,
        program: Module,
        *,
        trainset: Sequence[Example],
        k: int = 3,
        embedder: Embedder | None = None,
        input_fields: Sequence[str] | None = None,
    ) -> None:
        from oobleck.retrieve.embedders import HashingEmbedder

        pool = list(trainset)
        if not pool:
            raise ConfigError("KNNFewShot needs a non-empty trainset to draw demos from")
        for i, ex in enumerate(pool):
            if not isinstance(ex, Example) or ex.input_keys is None:
                raise ConfigError(f"trainset[{i}] is not an Example with inputs; use Example(...).with_inputs(...)")
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ConfigError(f"k must be an int >= 1, got {k!r}")
        self.program = program.copy()
        self.k = k
        self.embedder: Embedder = embedder if embedder is not None else HashingEmbedder()
        self.input_fields = list(input_fields) if input_fields is not None else None
        self.pool = pool
        self.embeddings: np.ndarray = self.embedder.embed([query_text(ex.inputs(), self.input_fields) for ex in pool])

    def _children(self) -> Any:
        yield "program", self.program

    # ---- retrieval ----

    def neighbours(self, **inputs: Any) -> list[int]:
        """Pool indices of the ``k`` rows most similar to ``inputs``, nearest first (ties: lower index)."""
        import numpy as np

        query = self.embedder.embed([query_text(inputs, self.input_fields)])[0]
        sims = np.asarray(self.embeddings, dtype=np.float32) @ np.asarray(query, dtype=np.float32)
        order = np.argsort(-sims, kind="stable")
        return [int(i) for i in order[: min(self.k, len(self.pool))]]

    def _with_demos(self, inputs: Mapping[str, Any]) -> Module:
        demos = [self.pool[i] for i in self.neighbours(**inputs)]
        run = self.program.copy()  # a per-call copy, so concurrent calls never share demos
        for predictor in run.predictors():
            predictor.demos = list(demos)
        return run

    def forward(self, **inputs: Any) -> Any:
        """Pick the demos for ``inputs`` and run the wrapped program with them."""
        return self._with_demos(inputs)(**inputs)

    async def aforward(self, **inputs: Any) -> Any:
        """Async form of :meth:`forward`."""
        return await self._with_demos(inputs).acall(**inputs)

    def render_calls(self, **inputs: Any) -> list[RenderedCall]:
        """The messages each predictor would send for ``inputs``, with the demos chosen for them."""
        calls = self._with_demos(inputs).render_calls(**inputs)
        return [RenderedCall(f"program.{c.predictor}", c.messages) for c in calls]

    # ---- saving (see oobleck.artifact) ----

    def dump_extra(self, files: Any) -> dict[str, Any]:
        """The pool, the embedder's config and the embeddings (as a ``.npy`` side file)."""
        import numpy as np

        matrix = np.ascontiguousarray(np.asarray(self.embeddings, dtype=np.float32))
        name = f"knn-{hashlib.sha256(matrix.tobytes()).hexdigest()[:16]}.npy"
        return {
            "k": self.k,
            "input_fields": self.input_fields,
            "embedder": self.embedder.config(),
            "pool": [to_data(ex) for ex in self.pool],
            "embeddings": files.write_array(name, matrix),
        }

    def load_extra(self, extra: Mapping[str, Any], files: Any) -> None:
        """Restore what :meth:`dump_extra` saved (the embedder is rebuilt from its config).

        Untrusted: everything a call uses is checked here, so a malformed artifact fails at
        load, not at its first call.

        Raises:
            ConfigError: the wrapped program, ``k``, ``input_fields``, ``pool``, ``embedder``
                or ``embeddings`` is missing or malformed (the loader reports it as an
                ArtifactError).
        """
        import numpy as np

        from oobleck.retrieve.embedders import embedder_from_config

        if not isinstance(self.__dict__.get("program"), Module):
            raise ConfigError("a saved KNNFewShot needs the program it wraps ('program')")
        missing = [key for key in ("k", "pool", "embedder", "embeddings") if key not in extra]
        if missing:
            raise ConfigError(f"the saved KNNFewShot state lacks {missing}; it was written by KNNFewShot.dump_extra")
        k, fields, rows = extra["k"], extra.get("input_fields"), extra["pool"]
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ConfigError(f"KNNFewShot k must be an int >= 1, got {k!r}")
        if fields is not None and (not isinstance(fields, list) or not all(isinstance(f, str) for f in fields)):
            raise ConfigError(f"KNNFewShot input_fields must be null or a list of names, got {fields!r}")
        if not isinstance(rows, list) or not rows:
            raise ConfigError("KNNFewShot pool must be a non-empty list of rows")
        pool = []
        for i, row in enumerate(rows):
            if not (isinstance(row, Mapping) and isinstance(row.get("fields"), Mapping) and row.get("inputs")):
                raise ConfigError(f"KNNFewShot pool[{i}] must be a row with its fields and its input names")
            inputs = row["inputs"]
            if not isinstance(inputs, list) or not all(isinstance(n, str) and n in row["fields"] for n in inputs):
                raise ConfigError(f"KNNFewShot pool[{i}] names inputs {inputs!r} that are not among its fields")
            pool.append(from_data(row))
        embedder = embedder_from_config(_checked_embedder(extra["embedder"], files))
        if not isinstance(extra["embeddings"], str):
            raise ConfigError(f"KNNFewShot embeddings must name a side file, got {extra['embeddings']!r}")
        matrix = files.read_array(extra["embeddings"])
        if matrix.ndim != 2 or matrix.dtype.kind != "f" or matrix.shape[0] != len(pool):
            raise ConfigError(
                f"KNNFewShot embeddings must be a float matrix with one row per pool row ({len(pool)}), "
                f"got a {matrix.dtype} array of shape {matrix.shape}"
            )
        dim = getattr(embedder, "dim", None)
        if isinstance(dim, int) and matrix.shape[1] != dim:
            raise ConfigError(f"KNNFewShot embeddings have {matrix.shape[1]} columns; the embedder makes {dim}")
        if not np.isfinite(matrix).all():
            raise ConfigError("KNNFewShot embeddings hold NaN or infinite values")
        self.k, self.input_fields, self.pool, self.embedder, self.embeddings = k, fields, pool, embedder, matrix

    def __repr__(self) -> str:
        return f"KNNFewShot(k={self.k}, pool={len(self.pool)}, embedder={self.embedder!r}, program={self.program!r})"


_MAX_HASH_DIM = 1 << 20


def _checked_embedder(config: Any, files: Any) -> dict[str, Any]:
    """The saved embedder config, with any model path the user did not allow refused.

    An artifact is data: it may name the bundled model (no path) or one the user allowed
    with ``load(..., allow_models=[...])``, and its sizes are bounded.
    """
    if not isinstance(config, Mapping):
        raise ConfigError(f"the KNN embedder config must be an object, got {type(config).__name__}")
    checked: dict[str, Any] = dict(config)
    if checked.get("type") == "transformers":
        checked["model_path"] = files.allowed_model(checked.get("model_path"), what="the KNN embedder")
    dim = checked.get("dim")
    if isinstance(dim, int) and not 1 <= dim <= _MAX_HASH_DIM:
        raise ConfigError(f"the KNN hashing embedder's dim must be within 1..{_MAX_HASH_DIM}, got {dim}")
    return checked
