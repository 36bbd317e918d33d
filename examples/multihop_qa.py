"""Multi-hop question answering over a small corpus, compiled end to end on SmolLM2.

Builds a hybrid retriever (BM25 through bm25s, fused with exact vector search by reciprocal
rank fusion), saves the index and loads it back, then runs ``MultiHop(hops=2)``: the first
search is the question, the second a query the model writes from the passages found, and the last step
answers from every passage. It scores the zero-shot program (answer exact match, and recall of
the gold titles read from the passages), compiles it with BootstrapFewShot (demos for every
step, taken from whole runs whose answer was right), saves the artifact (the index goes to
side files next to it), loads it back without this script's code, and prints one question's
hops. Every LM call goes through a disk cache.

Needs ``pip install 'oobleck[bm25]'`` and the embedded model. Run:
``python examples/multihop_qa.py`` (``--quick`` runs two questions).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import oobleck
from oobleck import Cache, CachedLM, Example, LocalLM
from oobleck.evaluation import evaluate
from oobleck.metrics import TitleRecall, exact_match, f1
from oobleck.modules.multihop import MultiHop
from oobleck.optimize import BootstrapFewShot
from oobleck.retrieve import BM25Index, HashingEmbedder, HybridRetriever, VectorIndex, load_index, save_index

HERE = Path(__file__).resolve().parent


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "out" / "multihop.json"), help="where to write the artifact")
    parser.add_argument("--cache", default=str(HERE / "out" / "cache"), help="LM cache directory")
    parser.add_argument("--quick", action="store_true", help="two questions only (used by the test suite)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    corpus = read_jsonl(HERE / "data" / "mini_wiki.jsonl")
    rows = [Example(r).with_inputs("question") for r in read_jsonl(HERE / "data" / "mini_wiki_questions.jsonl")]
    train, dev = (rows[:2], rows[4:6]) if args.quick else (rows[:4], rows[4:])

    # 1. An index: BM25 and hashed-word vectors fused by RRF; saved as side files, loaded back.
    docs = [{"id": r["title"], **r} for r in corpus]
    index = HybridRetriever(
        [BM25Index(docs, show_progress=False), VectorIndex(docs, embedder=HashingEmbedder(), show_progress=False)]
    )
    index_dir = out.parent / (out.stem + "_index")
    save_index(index, index_dir)
    index = load_index(index_dir)
    print(f"index: {len(corpus)} passages, saved to {index_dir}/")

    # 2. The program, zero-shot.
    lm = CachedLM(LocalLM(temperature=0, max_tokens=64), cache=Cache(args.cache))
    # The first search is the question; one query writer then searches for what the passages
    # point to. One repair retry: a 135M model's replies parse.
    program = MultiHop(index, hops=2, k=2, lm=lm, max_retries=1)
    recall = TitleRecall(gold_field="titles")
    zero = evaluate(program, dev, exact_match, progress=False, max_errors=None)
    zero_recall = evaluate(program, dev, recall, progress=False, max_errors=None)
    print(
        f"zero-shot: exact match {zero.score:.1f}%, gold-title recall {zero_recall.score:.1f}% on {len(dev)} questions"
    )

    # 3. Compile: demos for the query writers and the answerer, from runs that answered well.
    def good_answer(example: Example, prediction: oobleck.Prediction, trace: object = None) -> bool:
        return f1(example, prediction) >= 0.5

    compiled = BootstrapFewShot(good_answer, max_bootstrapped_demos=1, max_labeled_demos=1, max_errors=None).compile(
        program, trainset=train
    )
    compiled.save(out)
    print(f"compiled: demos per step {[len(p.demos) for p in compiled.predictors()]}; artifact {out}")

    # 4. Load the artifact without this script's code and run it.
    loaded = oobleck.load(out, lm=lm)
    after = evaluate(loaded.program, dev, exact_match, progress=False, max_errors=None)
    print(f"compiled (loaded from {out.name}): exact match {after.score:.1f}%")
    print(f"\n{dev[0].question}")
    with oobleck.trace() as t:
        try:
            pred = loaded(question=dev[0].question)
        except oobleck.ParseError as exc:  # a tiny model sometimes still writes no valid reply
            pred = oobleck.Prediction(answer=f"(no answer: {exc.reason})")
    for entry in t.entries:
        if type(entry.predictor).__name__ == "Retrieve":
            found = ", ".join(p.title for p in entry.outputs["passages"]) if entry.outputs else ""
            print(f"  search {entry.inputs['query']!r} -> {found}")
    print(f"  answer: {pred.answer!r} (gold {dev[0].answer!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
