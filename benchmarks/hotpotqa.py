"""HotPotQA retrieval and multi-hop QA: oobleck's retrievers, RAG and MultiHop vs DSPy's.

    PYTHONPATH=. python benchmarks/hotpotqa.py [--quick] [--dev 12] [--train 8] [--k 2] [--hops 2]
        [--max-tokens 48] [--threads 2] [--frameworks oobleck,dspy] [--retrieval-only]
        [--skip-retrievers] [--instruction-budget 150]

Data (../shared/data/hotpotqa, all questions from the official HotPotQA dev set, "hard"):
``corpus.jsonl`` (8,842 paragraphs pooled from the 900 questions' distractor contexts) is the
closed corpus every retriever indexes, as ``"title | text"``; ids are the titles.

Part 1, retrievers (no LM): build time and queries per second (all 300 dev questions in one
batch, and the first 50 one at a time) for BM25 (bm25s), exact numpy vectors over MiniLM
(all-MiniLM-L6-v2, the packaged model, reading each paragraph's first 48 tokens: see
MINILM_MAX_TOKENS) and over the hashing embedder, hybrid RRF (BM25 +
MiniLM) and Qdrant's in-process local mode (uploading the MiniLM vectors already computed, so
its build time is the upload only). Recall: the share of the 300 dev questions with BOTH gold
paragraphs in the top k.

Part 2, programs on SmolLM2-135M-Instruct (one oobleck.LocalLM instance, temperature 0; it
answers oobleck in-process and serves the OpenAI-compatible HTTP API that
dspy_side/hotpotqa.py calls, in the same run). Retriever: MiniLM exact vectors on both sides.
DSPy uses its own ``dspy.retrievers.Embeddings`` over the SAME corpus vectors (a callable
embedder that returns the precomputed MiniLM rows for corpus texts and asks this process's
MiniLM, over HTTP, for queries). Programs: RAG (k passages, then ``context, question ->
answer``) and MultiHop (``--hops`` searches of k new passages, then the answer). oobleck:
``RAG`` / ``MultiHop`` as shipped, on their defaults (the answer step in the backend's default
format, constrained JSON on one line; MultiHop's first search is the question and each later
one a query the model writes as a ``Query: ...`` line), one repair retry. DSPy: the RAG and
"SimplifiedBaleen" programs of its tutorials (every hop's query written by the model) with
their signatures, but ``dspy.Predict`` instead of ``ChainOfThought`` (as on our side: a 135M
model does not reason usefully, and the shared 2-core machine cannot afford the extra tokens),
and its JSONAdapter (structured output: the server turns the schema into a grammar).
Zero-shot, then compiled with BootstrapFewShot (both sides: max_bootstrapped_demos=B,
max_labeled_demos=B, the same --train rows, metric: answer token-F1 >= 0.5), and for
MultiHop also InstructionSearch (breadth 1, depth 1, answer F1 on the --instruction-val train
rows after --train, at most --instruction-budget calls) on top of the bootstrapped program. Reported on the first --dev
dev rows: answer exact match and F1 (SQuAD normalisation), recall of both gold paragraphs
among the passages the program read, LM calls and tokens (no cache anywhere; DSPy's count
includes its adapter's fallback calls), one LM call's time and the load average over the run.

The machine is 2 cores shared by several jobs: the LM part is sized to fit its time, so its
scores come from few rows and carry wide intervals (reported). The exact command and sizes are
recorded in the result.

Prints one JSON object and writes benchmarks/results/hotpotqa.json (or --out).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from _common import DATA, DSPY_SIDE, free_port, machine, read_jsonl, require_dspy_venv, run_dspy_side, write_result

import oobleck
from oobleck.evaluation import evaluate
from oobleck.metrics import exact_match, f1
from oobleck.modules.multihop import MultiHop
from oobleck.modules.rag import RAG
from oobleck.optimize import BootstrapFewShot, InstructionSearch, RandomSearch
from oobleck.retrieve import (
    BM25Index,
    Documents,
    HashingEmbedder,
    HybridRetriever,
    QdrantRetriever,
    TransformersEmbedder,
    VectorIndex,
)

HOTPOT = DATA / "hotpotqa"
CACHE = Path(os.environ.get("OOBLECK_BENCH_CACHE", "/tmp/oobleck-bench-hotpotqa"))
RECALL_KS = (2, 3, 4, 5, 10)
# Paragraph tokens MiniLM reads: the title and the opening words. The full paragraphs (about
# 130 tokens) took an estimated 55 minutes to embed on the shared, overloaded 2-core machine;
# 48 tokens fits the run's budget. BM25 reads the whole paragraph.
MINILM_MAX_TOKENS = 48
# (seconds since start, 1-minute load average), sampled every minute during the run.
LOAD: list[list[float]] = []


def sample_load(stop: threading.Event, t0: float) -> None:
    while not stop.wait(60):
        LOAD.append([round(time.perf_counter() - t0), round(os.getloadavg()[0], 2)])


def documents() -> Documents:
    rows = read_jsonl(HOTPOT / "corpus.jsonl")
    return Documents.from_corpus([{"id": r["title"], "title": r["title"], "text": r["text"]} for r in rows])


def both_found(gold: list[str], titles: list[str]) -> bool:
    return set(gold) <= set(titles)


def interval(p: float, n: int) -> list[float]:
    """95% Wilson interval of a proportion, in percent."""
    if n == 0:
        return [0.0, 100.0]
    z = 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(100 * max(0.0, centre - half), 1), round(100 * min(1.0, centre + half), 1)]


# ---------------------------------------------------------------- part 1: retrievers


def minilm_index(docs: Documents) -> tuple[VectorIndex, float, bool]:
    """The MiniLM index, its build time, and whether the vectors came from this run's build.

    The vectors are cached under CACHE (keyed by the corpus digest) so a rerun does not pay the
    embedding again; the build time reported is the one measured when they were computed.
    """
    import numpy as np

    embedder = TransformersEmbedder(batch_size=32, max_length=MINILM_MAX_TOKENS)
    key = hashlib.sha256((docs.digest() + json.dumps(embedder.config(), sort_keys=True)).encode()).hexdigest()[:16]
    path, meta = CACHE / f"minilm-{key}.npy", CACHE / f"minilm-{key}.json"
    if path.exists() and meta.exists():
        vectors = np.load(path, allow_pickle=False)
        return (
            VectorIndex.from_vectors(docs, vectors, embedder=embedder),
            json.loads(meta.read_text())["build_s"],
            False,
        )
    t0 = time.perf_counter()
    index = VectorIndex(docs, embedder=embedder, batch_size=1024, show_progress=True)
    build = time.perf_counter() - t0
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, index.vectors, allow_pickle=False)
    meta.write_text(json.dumps({"build_s": build}))
    return index, build, True


def measure_retriever(
    name: str, retriever: Any, build_s: float, questions: list[str], golds: list[list[str]], note: str = ""
) -> dict[str, Any]:
    retriever.search(questions[:2], k=3)  # warm (imports, first embedding)
    t0 = time.perf_counter()
    results = retriever.search(questions, k=max(RECALL_KS))
    batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    for q in questions[:50]:
        retriever.search([q], k=max(RECALL_KS))
    single = time.perf_counter() - t0
    recall = {
        f"both@{k}": round(
            100 * sum(both_found(g, [p.title for p in r[:k]]) for g, r in zip(golds, results)) / len(golds), 1
        )
        for k in RECALL_KS
    }
    row = {
        "retriever": name,
        "build_s": round(build_s, 2),
        "qps_batched": round(len(questions) / batched, 1),
        "qps_one_at_a_time": round(50 / single, 1),
        "recall": recall,
    }
    if note:
        row["note"] = note
    print(
        f"  {name:18s} build {build_s:7.2f}s  {row['qps_batched']:8.1f} q/s batched  "
        f"{row['qps_one_at_a_time']:7.1f} q/s single  both@2 {recall['both@2']:5.1f}  both@10 {recall['both@10']:5.1f}",
        file=sys.stderr,
        flush=True,
    )
    return row


def part_retrievers(docs: Documents) -> tuple[list[dict[str, Any]], VectorIndex]:
    dev_all = read_jsonl(HOTPOT / "dev.jsonl")
    questions = [r["question"] for r in dev_all]
    golds = [r["supporting_titles"] for r in dev_all]
    rows = []
    t0 = time.perf_counter()
    bm25 = BM25Index(docs, show_progress=False)
    rows.append(measure_retriever("bm25 (bm25s)", bm25, time.perf_counter() - t0, questions, golds))
    minilm, build, fresh = minilm_index(docs)
    rows.append(
        measure_retriever(
            "vector MiniLM",
            minilm,
            build,
            questions,
            golds,
            "" if fresh else "build time measured when the cached vectors were computed",
        )
    )
    t0 = time.perf_counter()
    hashing = VectorIndex(docs, embedder=HashingEmbedder(), show_progress=False)
    rows.append(measure_retriever("vector hashing", hashing, time.perf_counter() - t0, questions, golds))
    hybrid = HybridRetriever([bm25, minilm])
    rows.append(
        measure_retriever(
            "hybrid RRF", hybrid, 0.0, questions, golds, "fuses the two indexes above: no build of its own"
        )
    )
    t0 = time.perf_counter()
    qdrant = QdrantRetriever.from_corpus(
        docs, "hotpotqa", embedder=minilm.embedder, vectors=minilm.vectors, show_progress=False
    )
    rows.append(
        measure_retriever(
            "qdrant local MiniLM",
            qdrant,
            time.perf_counter() - t0,
            questions,
            golds,
            "in-process local mode; build = uploading the MiniLM vectors",
        )
    )
    return rows, minilm


# ---------------------------------------------------------------- part 2: programs


class _EmbedHandler(BaseHTTPRequestHandler):
    embedder: Any = None
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.lock:
            vectors = self.embedder.embed(body["texts"]).tolist()
        data = json.dumps({"vectors": vectors}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def start_embedding_server(embedder: Any) -> tuple[ThreadingHTTPServer, str]:
    _EmbedHandler.embedder = embedder
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _EmbedHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/embed"


def examples(rows: list[dict[str, Any]]) -> list[oobleck.Example]:
    return [
        oobleck.Example(
            question=r["question"], answer=r["answer"], supporting_titles=r["supporting_titles"]
        ).with_inputs("question")
        for r in rows
    ]


def bootstrap_metric(example: Any, prediction: Any, trace: Any = None) -> bool:
    return f1(example, prediction) >= 0.5


def usage_dict(u: Any, wall: float) -> dict[str, Any]:
    return {
        "calls": u.calls,  # every attempt sent, retries included (DEVELOPERS.md)
        "retries": u.retries,
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "tokens": u.prompt_tokens + u.completion_tokens,
        "wall_s": round(wall, 1),
    }


def score(program: Any, dev: list[oobleck.Example], threads: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    res = evaluate(program, dev, exact_match, num_threads=threads, progress=False, max_errors=None)
    wall = time.perf_counter() - t0
    ems, f1s, found, failed = [], [], [], 0
    for row in res.rows:
        if row.prediction is None:
            failed += 1
            ems.append(0.0)
            f1s.append(0.0)
            found.append(False)
            continue
        ems.append(float(exact_match(row.example, row.prediction)))
        f1s.append(f1(row.example, row.prediction))
        found.append(both_found(row.example.supporting_titles, [p.title for p in row.prediction.passages]))
    n = len(dev)
    return {
        "em": round(100 * sum(ems) / n, 1),
        "em_95ci": interval(sum(ems) / n, n),
        "f1": round(100 * sum(f1s) / n, 1),
        "recall_both": round(100 * sum(found) / n, 1),
        "failed_rows": failed,
        "usage": usage_dict(res.usage, wall),
    }


def part_programs_oobleck(
    lm: Any,
    index: VectorIndex,
    train: list[oobleck.Example],
    dev: list[oobleck.Example],
    a: Any,
    val: list[oobleck.Example],
) -> dict[str, Any]:
    """RAG and MultiHop as a user gets them (default adapters, one repair retry), zero-shot and compiled."""
    out: dict[str, Any] = {}
    builders = {
        "rag": lambda: RAG(index, k=a.k, lm=lm, max_retries=1),
        "multihop": lambda: MultiHop(index, hops=a.hops, k=a.k, lm=lm, max_retries=1),
    }
    for name, build in builders.items():
        program = build()
        zero = score(program, dev, a.threads)
        print(
            f"  oobleck {name:9s} zero-shot EM {zero['em']:5.1f} F1 {zero['f1']:5.1f} recall {zero['recall_both']:5.1f} "
            f"calls {zero['usage']['calls']}",
            file=sys.stderr,
            flush=True,
        )
        t0 = time.perf_counter()
        opt = BootstrapFewShot(
            bootstrap_metric, max_bootstrapped_demos=a.demos, max_labeled_demos=a.demos, max_errors=None
        )
        compiled = opt.compile(program, trainset=train)
        compile_usage = usage_dict(compiled.compile_usage, time.perf_counter() - t0)
        comp = score(compiled, dev, a.threads)
        comp["compile"] = compile_usage
        comp["demos"] = {n: len(p.demos) for n, p in compiled.named_predictors()}
        print(
            f"  oobleck {name:9s} compiled  EM {comp['em']:5.1f} F1 {comp['f1']:5.1f} recall {comp['recall_both']:5.1f} "
            f"calls {comp['usage']['calls']} (+{compile_usage['calls']} to compile) demos {comp['demos']}",
            file=sys.stderr,
            flush=True,
        )
        out[name] = {"zero_shot": zero, "compiled": comp}
        if a.search_candidates:
            out[name]["compiled_search"] = search_row(name, build(), train, val, dev, a)
        if name == "multihop" and a.instruction_budget:
            out[name]["compiled_instructions"] = instruction_row(compiled, compile_usage, val, dev, a)
    return out


def answer_f1(example: Any, prediction: Any, trace: Any = None) -> float:
    return f1(example, prediction)


def search_row(
    name: str,
    program: Any,
    train: list[oobleck.Example],
    val: list[oobleck.Example],
    dev: list[oobleck.Example],
    a: Any,
) -> dict[str, Any]:
    """RandomSearch: several bootstrapped demo sets (and zero-shot) scored by answer F1 on ``val``,
    with paired racing; the winner is what a user gets from ``oobleck compile --optimizer random``."""
    t0 = time.perf_counter()
    opt = RandomSearch(
        answer_f1,
        num_candidates=a.search_candidates,
        metric_threshold=0.5,
        max_bootstrapped_demos=a.demos,
        max_labeled_demos=a.demos,
        racing=True,
        max_errors=None,
        num_threads=a.threads,
    )
    tuned = opt.compile(program, trainset=train, valset=val, seed=0)
    usage = usage_dict(tuned.compile_usage, time.perf_counter() - t0)
    row = score(tuned, dev, a.threads)
    row["compile"] = usage
    row["demos"] = {n: len(p.demos) for n, p in tuned.named_predictors()}
    row["search"] = {
        k: tuned.provenance["scores"].get(k) for k in ("best", "start_score", "best_score", "verdict", "racing")
    }
    print(
        f"  oobleck {name:9s} +search  EM {row['em']:5.1f} F1 {row['f1']:5.1f} recall {row['recall_both']:5.1f} "
        f"(+{usage['calls']} to compile) demos {row['demos']} search {row['search']}",
        file=sys.stderr,
        flush=True,
    )
    return row


def instruction_row(
    bootstrapped: Any, boot_usage: dict[str, Any], val: list[oobleck.Example], dev: list[oobleck.Example], a: Any
) -> dict[str, Any]:
    """InstructionSearch on top of the bootstrapped MultiHop: one new instruction per step, scored on
    train rows the bootstrap did not use (``val``)."""
    t0 = time.perf_counter()
    opt = InstructionSearch(
        answer_f1,
        breadth=1,
        depth=1,
        n_demos=0,
        max_errors=None,
        num_threads=a.threads,
        max_lm_calls=a.instruction_budget,
    )
    tuned = opt.compile(bootstrapped, trainset=val, valset=val, seed=0)
    usage = usage_dict(tuned.compile_usage, time.perf_counter() - t0)
    row = score(tuned, dev, a.threads)
    for key in ("calls", "prompt_tokens", "completion_tokens", "tokens"):
        usage[key] += boot_usage[key]
    row["compile"] = usage
    row["instructions"] = {n: p.instructions for n, p in tuned.named_predictors()}
    row["search"] = {k: tuned.provenance["scores"].get(k) for k in ("start_score", "best_score")}
    print(
        f"  oobleck multihop +instructions EM {row['em']:5.1f} F1 {row['f1']:5.1f} recall {row['recall_both']:5.1f} "
        f"(+{usage['calls']} to compile, bootstrap included)",
        file=sys.stderr,
        flush=True,
    )
    return row


def one_hop_recall(index: Any, rows: list[dict[str, Any]], ks: tuple[int, ...]) -> dict[str, float]:
    """Recall of both gold paragraphs for one search with the question, on the LM part's rows."""
    results = index.search([r["question"] for r in rows], k=max(ks))
    return {
        f"both@{k}": round(
            100
            * sum(both_found(r["supporting_titles"], [p.title for p in res[:k]]) for r, res in zip(rows, results))
            / len(rows),
            1,
        )
        for k in ks
    }


def main() -> None:
    import torch

    # One intra-op thread: on the busy shared 2-core machine two threads contend and run slower.
    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: dev 2, train 2")
    ap.add_argument("--dev", type=int, default=12, help="first N dev rows for the LM part")
    ap.add_argument("--train", type=int, default=8, help="first N train rows to bootstrap from")
    ap.add_argument("--k", type=int, default=2, help="passages per retrieval (per hop)")
    ap.add_argument("--hops", type=int, default=2)
    ap.add_argument("--demos", type=int, default=1, help="max bootstrapped (and labelled) demos per predictor")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2, help="concurrent calls (and llama.cpp slots)")
    ap.add_argument("--n-threads", type=int, default=1, help="llama.cpp CPU threads")
    ap.add_argument("--frameworks", default="oobleck,dspy")
    ap.add_argument("--retrieval-only", action="store_true")
    ap.add_argument("--skip-retrievers", action="store_true", help="no part 1 (the MiniLM vectors must be cached)")
    ap.add_argument(
        "--instruction-budget",
        type=int,
        default=150,
        help="LM calls for InstructionSearch on the compiled MultiHop (0: skip that row)",
    )
    ap.add_argument("--instruction-val", type=int, default=8, help="train rows after --train that score instructions")
    ap.add_argument(
        "--search-candidates",
        type=int,
        default=3,
        help="RandomSearch's shuffled demo sets besides its fixed three (0: skip that row)",
    )
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.quick:
        a.dev, a.train = 2, 2
    a.out = a.out or ("hotpotqa_quick" if a.quick else "hotpotqa")
    frameworks = a.frameworks.split(",")
    if "dspy" in frameworks and not a.retrieval_only:
        require_dspy_venv()
    t_start = time.perf_counter()
    load_start = [round(x, 2) for x in os.getloadavg()]
    stop_sampling = threading.Event()
    threading.Thread(target=sample_load, args=(stop_sampling, t_start), daemon=True).start()

    docs = documents()
    if a.skip_retrievers:
        retrievers, minilm = [], minilm_index(docs)[0]
    else:
        print(f"part 1: retrievers over {len(docs)} paragraphs, 300 dev questions", file=sys.stderr, flush=True)
        retrievers, minilm = part_retrievers(docs)
    result: dict[str, Any] = {
        "benchmark": "hotpotqa",
        "corpus": {"paragraphs": len(docs), "file": "hotpotqa/corpus.jsonl", "indexed_as": "title | text"},
        "retrievers": {"questions": 300, "rows": retrievers},
        "args": vars(a),
        "command": "PYTHONPATH=. python benchmarks/hotpotqa.py " + " ".join(sys.argv[1:]),
        "loadavg_at_start": load_start,
        "loadavg_samples": LOAD,
    }

    if not a.retrieval_only:
        train = examples(read_jsonl(HOTPOT / "train.jsonl")[: a.train])
        dev = examples(read_jsonl(HOTPOT / "dev.jsonl")[: a.dev])
        port = free_port()
        lm = oobleck.LocalLM(
            temperature=0,
            max_tokens=a.max_tokens,
            n_parallel=a.threads,
            port=port,
            n_threads=a.n_threads or None,
            n_ctx=4096 * a.threads,
        )
        lm.server()
        t0 = time.perf_counter()
        lm("Name the capital of France.")  # loads the model
        t1 = time.perf_counter()
        lm("Name the capital of Italy.")
        one_call = {"first_call_s": round(t1 - t0, 2), "warm_call_s": round(time.perf_counter() - t1, 2)}
        print(f"  one LM call: {one_call}", file=sys.stderr, flush=True)
        programs: dict[str, Any] = {}
        print(f"part 2: programs on SmolLM2, dev {len(dev)} rows, train {len(train)} rows", file=sys.stderr, flush=True)
        if "oobleck" in frameworks:
            val = examples(read_jsonl(HOTPOT / "train.jsonl")[a.train : a.train + a.instruction_val])
            programs["oobleck"] = part_programs_oobleck(lm, minilm, train, dev, a, val)
        if "dspy" in frameworks:
            CACHE.mkdir(parents=True, exist_ok=True)
            vectors_path = CACHE / "corpus_vectors_for_dspy.npy"
            import numpy as np

            np.save(vectors_path, minilm.vectors, allow_pickle=False)
            server, embed_url = start_embedding_server(minilm.embedder)
            try:
                dspy_out = run_dspy_side(
                    "hotpotqa.py",
                    "--data",
                    str(HOTPOT),
                    "--base-url",
                    f"http://127.0.0.1:{port}/v1",
                    "--embed-url",
                    embed_url,
                    "--vectors",
                    str(vectors_path),
                    "--dev",
                    str(a.dev),
                    "--train",
                    str(a.train),
                    "--k",
                    str(a.k),
                    "--hops",
                    str(a.hops),
                    "--demos",
                    str(a.demos),
                    "--max-tokens",
                    str(a.max_tokens),
                    "--threads",
                    str(a.threads),
                )
            finally:
                server.shutdown()
            sys.stderr.write(
                "".join(ln + "\n" for ln in dspy_out.pop("_stderr", "").splitlines() if ln.startswith("  dspy"))
            )
            programs["dspy"] = dspy_out
        lm.close()
        dev_rows = read_jsonl(HOTPOT / "dev.jsonl")[: a.dev]
        programs["one_hop_recall_same_rows"] = {
            "k": a.k,
            "hops": a.hops,
            **one_hop_recall(minilm, dev_rows, (a.k, a.k * a.hops)),
        }
        result["programs"] = programs
        result["lm"] = {
            "model": lm.model_path.name,
            "temperature": 0,
            "max_tokens": a.max_tokens,
            "parallel_slots": a.threads,
            "cpu_threads": a.n_threads,
            **one_call,
        }
        result["data"] = {
            "dev": f"dev.jsonl[:{a.dev}]",
            "train": f"train.jsonl[:{a.train}]",
            "instruction_val": f"train.jsonl[{a.train}:{a.train + a.instruction_val}]",
        }
        result["table"] = table(programs)
    stop_sampling.set()
    result["elapsed_s"] = round(time.perf_counter() - t_start, 1)
    result["machine"] = machine()
    result["dspy_side"] = str((DSPY_SIDE / "hotpotqa.py").relative_to(DSPY_SIDE.parent.parent))
    write_result(a.out, result)


def table(programs: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for fw, progs in programs.items():
        if fw == "one_hop_recall_same_rows":
            continue
        for prog in ("rag", "multihop"):
            for stage in ("zero_shot", "compiled", "compiled_search", "compiled_instructions"):
                m = (progs.get(prog) or {}).get(stage)
                if not m:
                    continue
                rows.append(
                    {
                        "framework": fw,
                        "program": prog,
                        "stage": stage,
                        "em": m["em"],
                        "em_95ci": m["em_95ci"],
                        "f1": m["f1"],
                        "recall_both": m["recall_both"],
                        "eval_calls": m["usage"]["calls"],
                        "compile_calls": (m.get("compile") or {}).get("calls", 0),
                        "failed_rows": m.get("failed_rows", 0),
                    }
                )
    return rows


if __name__ == "__main__":
    main()
