"""DSPy's half of benchmarks/hotpotqa.py: its tutorial RAG and multi-hop programs on HotPotQA.

Run inside the DSPy venv (see benchmarks/setup_dspy.sh) by the parent script, which serves
SmolLM2-135M-Instruct (oobleck's LocalLM over HTTP) and MiniLM query embeddings over HTTP:

    /work/.venv-dspy/bin/python benchmarks/dspy_side/hotpotqa.py --data /work/shared/data/hotpotqa \
        --base-url http://127.0.0.1:PORT/v1 --embed-url http://127.0.0.1:PORT2/embed \
        --vectors corpus_vectors.npy [--dev 12 --train 8 --k 2 --hops 2 --demos 1 --max-tokens 48 --threads 2]

Retriever: ``dspy.retrievers.Embeddings`` over the corpus as ``"title | text"`` strings, with a
callable embedder that returns the parent's precomputed MiniLM vectors for corpus texts (the
same vectors oobleck's VectorIndex searches) and asks the parent's MiniLM for anything else
(the queries). Programs: the RAG and SimplifiedBaleen modules of DSPy's tutorials, with their
signatures, using dspy.Predict instead of dspy.ChainOfThought (as on the oobleck side), and
dspy.JSONAdapter with the server declared to DSPy as supporting response schemas
(_dspy_common.local_lm), so its schema becomes a grammar, as with oobleck's JSONAdapter.
Compiling: dspy.BootstrapFewShot(max_bootstrapped_demos=D, max_labeled_demos=D), metric answer
token-F1 >= 0.5. Scores: SQuAD-normalised EM and F1 (the same code as oobleck.metrics),
recall of both gold titles among the passages read. Counting: DSPy's caches are off and the LM
has cache=False; calls and tokens come from DSPy's global LM history (ChatAdapter's JSON
fallback is a second call and is counted).

Prints one JSON object on stdout; DSPy's own chatter goes to stderr.
"""

import argparse
import collections
import contextlib
import json
import os
import sys
import time
import urllib.request

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402
import numpy as np  # noqa: E402
from _dspy_common import local_lm, normalize, phase, read_jsonl  # noqa: E402


def em(gold, pred):
    return float(normalize(gold) == normalize(pred))


def token_f1(gold, pred):
    p, g = normalize(pred).split(), normalize(gold).split()
    if not p or not g:
        return float(p == g)
    same = sum((collections.Counter(p) & collections.Counter(g)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def bootstrap_metric(example, pred, trace=None):
    return token_f1(example.answer, getattr(pred, "answer", "") or "") >= 0.5


# ---- the programs, as in DSPy's tutorials (Predict in place of ChainOfThought) ----


class GenerateAnswer(dspy.Signature):
    """Answer questions with short factoid answers."""

    context = dspy.InputField(desc="may contain relevant facts")
    question = dspy.InputField()
    answer = dspy.OutputField(desc="often between 1 and 5 words")


class GenerateSearchQuery(dspy.Signature):
    """Write a simple search query that will help answer a complex question."""

    context = dspy.InputField(desc="may contain relevant facts")
    question = dspy.InputField()
    query = dspy.OutputField()


def deduplicate(seq):
    return list(dict.fromkeys(seq))


class RAG(dspy.Module):
    def __init__(self, search):
        super().__init__()
        self.search = search
        self.generate_answer = dspy.Predict(GenerateAnswer)

    def forward(self, question):
        context = self.search(question).passages
        prediction = self.generate_answer(context=context, question=question)
        return dspy.Prediction(context=context, answer=prediction.answer)


class SimplifiedBaleen(dspy.Module):
    def __init__(self, search, max_hops):
        super().__init__()
        self.search = search
        self.generate_query = [dspy.Predict(GenerateSearchQuery) for _ in range(max_hops)]
        self.generate_answer = dspy.Predict(GenerateAnswer)
        self.max_hops = max_hops

    def forward(self, question):
        context = []
        for hop in range(self.max_hops):
            query = self.generate_query[hop](context=context, question=question).query
            passages = self.search(query).passages
            context = deduplicate(context + passages)
        pred = self.generate_answer(context=context, question=question)
        return dspy.Prediction(context=context, answer=pred.answer)


# ---- helpers ----


def make_embedder(corpus, vectors, url):
    rows = {text: i for i, text in enumerate(corpus)}

    def embed(texts):
        texts = list(texts)
        out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
        missing = [i for i, t in enumerate(texts) if t not in rows]
        for i, t in enumerate(texts):
            if t in rows:
                out[i] = vectors[rows[t]]
        if missing:
            body = json.dumps({"texts": [texts[i] for i in missing]}).encode()
            req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            got = json.loads(urllib.request.urlopen(req, timeout=120).read())["vectors"]
            for i, v in zip(missing, got):
                out[i] = v
        return out

    return embed


def interval(p, n):
    import math

    if n == 0:
        return [0.0, 100.0]
    z = 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(100 * max(0.0, centre - half), 1), round(100 * min(1.0, centre + half), 1)]


def score(program, devset, threads):
    usage = {}
    with phase(usage):
        ev = dspy.Evaluate(
            devset=devset,
            metric=lambda ex, pred, trace=None: em(ex.answer, getattr(pred, "answer", "") or ""),
            num_threads=threads,
            max_errors=10_000,
            display_progress=False,
            display_table=False,
            provide_traceback=False,
        )
        result = ev(program)
    ems, f1s, found, failed = [], [], [], 0
    for ex, pred, _ in result.results:
        answer = getattr(pred, "answer", None)
        if answer is None:
            failed += 1
        answer = answer or ""
        ems.append(em(ex.answer, answer))
        f1s.append(token_f1(ex.answer, answer))
        titles = [p.split(" | ", 1)[0] for p in (getattr(pred, "context", None) or [])]
        found.append(set(ex.supporting_titles) <= set(titles))
    n = len(devset)
    return {
        "em": round(100 * sum(ems) / n, 1),
        "em_95ci": interval(sum(ems) / n, n),
        "f1": round(100 * sum(f1s) / n, 1),
        "recall_both": round(100 * sum(found) / n, 1),
        "failed_rows": failed,
        "usage": usage,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--embed-url", required=True)
    ap.add_argument("--vectors", required=True)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--dev", type=int, default=12)
    ap.add_argument("--train", type=int, default=8)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--hops", type=int, default=2)
    ap.add_argument("--demos", type=int, default=1)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()

    # Caches off BEFORE the retriever embeds the corpus: dspy.Embedder's cache keys a callable
    # embedder by name, so it served vectors of an earlier run's different embedder.
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    corpus = [f"{r['title']} | {r['text']}" for r in read_jsonl(os.path.join(a.data, "corpus.jsonl"))]
    vectors = np.load(a.vectors, allow_pickle=False)
    t0 = time.perf_counter()
    embedder = dspy.Embedder(make_embedder(corpus, vectors, a.embed_url), caching=False)
    search = dspy.retrievers.Embeddings(corpus=corpus, embedder=embedder, k=a.k)
    assert search.corpus_embeddings.shape == vectors.shape, (search.corpus_embeddings.shape, vectors.shape)
    build_s = time.perf_counter() - t0

    def ex(r):
        return dspy.Example(
            question=r["question"], answer=r["answer"], supporting_titles=r["supporting_titles"]
        ).with_inputs("question")

    trainset = [ex(r) for r in read_jsonl(os.path.join(a.data, "train.jsonl"))[: a.train]]
    devset = [ex(r) for r in read_jsonl(os.path.join(a.data, "dev.jsonl"))[: a.dev]]

    lm = local_lm(a.model, a.base_url, structured=True, temperature=0, max_tokens=a.max_tokens, cache=False)
    dspy.configure(lm=lm, adapter=dspy.JSONAdapter())

    out = {
        "framework": "dspy",
        "version": dspy.__version__,
        "retriever_build_s_with_precomputed_vectors": round(build_s, 2),
    }
    builders = {"rag": lambda: RAG(search), "multihop": lambda: SimplifiedBaleen(search, a.hops)}
    with contextlib.redirect_stdout(sys.stderr):
        for name, build in builders.items():
            program = build()
            zero = score(program, devset, a.threads)
            print(
                f"  dspy    {name:9s} zero-shot EM {zero['em']:5.1f} F1 {zero['f1']:5.1f} recall {zero['recall_both']:5.1f} "
                f"calls {zero['usage']['calls']}",
                file=sys.stderr,
                flush=True,
            )
            compile_usage = {}
            opt = dspy.BootstrapFewShot(
                metric=bootstrap_metric, max_bootstrapped_demos=a.demos, max_labeled_demos=a.demos, max_errors=10_000
            )
            with phase(compile_usage):
                compiled = opt.compile(program, trainset=trainset)
            comp = score(compiled, devset, a.threads)
            comp["compile"] = compile_usage
            comp["demos"] = {n: len(p.demos) for n, p in compiled.named_predictors()}
            print(
                f"  dspy    {name:9s} compiled  EM {comp['em']:5.1f} F1 {comp['f1']:5.1f} recall {comp['recall_both']:5.1f} "
                f"calls {comp['usage']['calls']} (+{compile_usage['calls']} to compile)",
                file=sys.stderr,
                flush=True,
            )
            out[name] = {"zero_shot": zero, "compiled": comp}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
