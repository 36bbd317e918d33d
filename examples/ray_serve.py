"""Scale a served program out on Ray Serve: the same ``oobleck.asgi_app`` as a Ray deployment.

``oobleck.asgi_app`` returns a FastAPI app, and Ray Serve runs FastAPI apps as deployments
(``@serve.ingress(app)``), with replicas, autoscaling and its own HTTP proxy. This example
deploys a sentiment program under ``/sst2`` with two replicas on a local Ray instance, sends it
the first rows of ``examples/data/sst2_train.jsonl`` one by one and as a batch, and reads the
typed OpenAPI schema through Ray's proxy.

The LM is a scripted stand-in that answers each known sentence with its label from the data
file: the point here is the deployment, and a scripted LM is cheap to copy into every replica
(an embedded model would load once per replica; give each replica ``num_cpus`` for it).

Needs ``pip install 'ray[serve]'`` (not an oobleck extra: Ray is large). Without it the example
says so, writes ``{"ran": false, ...}`` to ``--out`` and exits 0. Run it with
``python examples/ray_serve.py`` (``--quick`` sends fewer requests).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

import oobleck

HERE = Path(__file__).resolve().parent
SENTIMENT = "text -> label: Literal['positive', 'negative']"


def rows(n: int) -> list[dict[str, str]]:
    with (HERE / "data" / "sst2_train.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()][:n]


def scripted_lm(data: list[dict[str, str]]) -> oobleck.FakeLM:
    labels = {r["text"]: r["label"] for r in data}

    def answer(request: Any) -> str:
        text = request.messages[-1].content.split("\n")[1]
        return f"[[ ## label ## ]]\n{labels.get(text, 'negative')}"

    return oobleck.FakeLM(answer)


def post(url: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as reply:
        return reply.status, json.loads(reply.read())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "out" / "ray_serve.json"), help="where to write the summary")
    parser.add_argument("--cache", default=None, help="unused (the LM is scripted); accepted like every example")
    parser.add_argument("--quick", action="store_true", help="two sentences instead of eight")
    parser.add_argument("--port", type=int, default=8765, help="Ray Serve's HTTP port on 127.0.0.1")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        import ray
        from ray import serve
    except ImportError:
        print("ray[serve] is not installed: pip install 'ray[serve]' to run this example")
        out.write_text(json.dumps({"ran": False, "reason": "ray[serve] is not installed"}, indent=2) + "\n")
        return 0

    data = rows(2 if args.quick else 8)
    app = oobleck.asgi_app(oobleck.Predict(SENTIMENT), lm=scripted_lm(data), max_batch=16)

    @serve.deployment(num_replicas=2, ray_actor_options={"num_cpus": 0.5})
    @serve.ingress(app)
    class Sentiment:
        """The oobleck app, as a Ray Serve deployment."""

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        serve.run(Sentiment.bind(), route_prefix="/sst2")
        base = f"http://127.0.0.1:{args.port}/sst2"
        answers = [post(base + "/", {"text": r["text"]}) for r in data]
        batch = post(base + "/batch", [{"text": r["text"]} for r in data])
        with urllib.request.urlopen(base + "/openapi.json", timeout=60) as reply:
            schema = json.loads(reply.read())
    finally:
        serve.shutdown()
        ray.shutdown()
    labels = [body["label"] for _, body in answers]
    for r, label in zip(data, labels):
        print(f"{r['text'][:50]!r} -> {label}")
    summary = {
        "ran": True,
        "ray": ray.__version__,
        "statuses": [status for status, _ in answers],
        "labels_match_data": labels == [r["label"] for r in data],
        "batch_statuses": [item["status"] for item in batch[1]],
        "openapi_label_enum": schema["components"]["schemas"]["SelfOutputs"]["properties"]["label"]["enum"],
    }
    out.write_text(json.dumps(summary, indent=2) + "\n")
    ok = summary["labels_match_data"] and all(s == 200 for s in summary["statuses"] + summary["batch_statuses"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
