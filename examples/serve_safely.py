"""Serve a frozen program safely: a tampered artifact is refused, the server wants a token.

1. Saves a small SST-2 sentiment program (4 demos from ``examples/data/sst2_train.jsonl``).
2. Tampers a copy the way a hostile artifact would: ``config.extra`` tries to point your LM at
   another model and endpoint, and a side file is swapped for a symlink to a file outside the
   artifact's folder. Loading refuses both with an ``ArtifactError`` that says why.
3. Serves the genuine artifact (``oobleck.serve.make_server``: the FastAPI app of
   ``oobleck.asgi_app`` on uvicorn) on 127.0.0.1 with a bearer token, bounded concurrency and
   a deadline for each request's headers and body, on the embedded SmolLM2 model: a request
   without the token gets a JSON 401, one with it gets the label, a batch gets one answer per
   input, ``/openapi.json`` types the label as an enum of the signature's two labels, and
   ``POST /stream`` answers in server-sent events ending with the prediction.

Run it with ``python examples/serve_safely.py`` inside the venv (``--quick`` sends fewer
requests). Writes a JSON summary to ``--out``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import secrets
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from oobleck import ArtifactError, Cache, CachedLM, Example, JSONAdapter, LocalLM, Predict
from oobleck.artifact import load
from oobleck.modules.knn import KNNFewShot
from oobleck.serve import make_server

HERE = Path(__file__).resolve().parent
SENTIMENT = "text -> label: Literal['positive', 'negative']"


def rows(n: int) -> list[Example]:
    with (HERE / "data" / "sst2_train.jsonl").open(encoding="utf-8") as f:
        data = [json.loads(line) for line in f if line.strip()]
    return [Example(r).with_inputs("text") for r in data[:n]]


def tampered(folder: Path) -> dict[str, str]:
    """Save artifacts, tamper with copies, and report what loading said."""
    refused: dict[str, str] = {}
    Predict(SENTIMENT, demos=[r.to_dict() for r in rows(4)], adapter=JSONAdapter()).save(folder / "plain.json")
    doc = json.loads((folder / "plain.json").read_text())
    doc["predictors"][0]["config"]["extra"] = {"model": "attacker-model", "base_url": "http://203.0.113.9/v1"}
    (folder / "steer.json").write_text(json.dumps(doc))
    try:
        load(folder / "steer.json")
        refused["config.extra"] = "LOADED (should have been refused)"
    except ArtifactError as exc:
        refused["config.extra"] = str(exc)

    knn_dir = folder / "knn"
    knn_dir.mkdir()
    KNNFewShot(Predict(SENTIMENT), trainset=rows(8), k=2).save(knn_dir / "knn.json")
    side = next(knn_dir.glob("knn.*.npy"))
    outside = folder / "outside.npy"
    side.rename(outside)
    side.symlink_to(outside)  # same bytes, same hash, but outside the artifact's folder
    try:
        load(knn_dir / "knn.json")
        refused["symlinked side file"] = "LOADED (should have been refused)"
    except ArtifactError as exc:
        refused["symlinked side file"] = str(exc)
    return refused


def post(
    address: tuple[str, int], body: Any, token: str | None, path: str = "/", method: str = "POST"
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(*address, timeout=120)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request(method, path, body=json.dumps(body) if method == "POST" else None, headers=headers)
    resp = conn.getresponse()
    payload = json.loads(resp.read())
    conn.close()
    return resp.status, payload


def stream(address: tuple[str, int], body: dict[str, Any], token: str) -> list[tuple[str, Any]]:
    """The (event, data) pairs of a server-sent-event answer to ``POST /stream``."""
    conn = http.client.HTTPConnection(*address, timeout=120)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    conn.request("POST", "/stream", body=json.dumps(body), headers=headers)
    text = conn.getresponse().read().decode("utf-8")
    conn.close()
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "out" / "serve_safely.json"), help="where to write the summary")
    parser.add_argument("--cache", default=str(HERE / "out" / "cache"), help="LM cache directory")
    parser.add_argument("--quick", action="store_true", help="one request only (used by the test suite)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        refused = tampered(folder)
        for what, message in refused.items():
            print(f"tampered artifact ({what}): {message}")
        lm = CachedLM(LocalLM(temperature=0, max_tokens=24), cache=Cache(args.cache))
        artifact = load(folder / "plain.json", lm=lm)
        token = secrets.token_urlsafe(24)
        server = make_server(artifact, port=0, token=token, max_inflight=4, conn_timeout=10)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        address = server.server_address[:2]
        try:
            no_token = post(address, {"text": "a gorgeous, heartfelt film"}, None)
            print(f"without the token: HTTP {no_token[0]} {no_token[1]['error']['type']}")
            texts = ["a gorgeous, heartfelt film"] + (
                [] if args.quick else ["a dull and lifeless mess", "sharp, funny writing"]
            )
            answers = [post(address, {"text": t}, token) for t in texts]
            for text, (status, body) in zip(texts, answers):
                print(f"with the token: HTTP {status} {text!r} -> {body}")
            batch = post(address, [{"text": t} for t in texts], token, "/batch")
            print(f"a batch of {len(texts)}: HTTP {batch[0]} {[item['status'] for item in batch[1]]}")
            schema = post(address, None, token, "/openapi.json", "GET")[1]
            label_enum = schema["components"]["schemas"]["SelfOutputs"]["properties"]["label"]["enum"]
            print(f"/openapi.json types the label as one of {label_enum}")
            streamed = stream(address, {"text": texts[0]}, token)
            print(f"POST /stream: events {[kind for kind, _ in streamed]}, last {streamed[-1][1]['outputs']}")
        finally:
            server.shutdown()
            server.server_close()
    summary = {
        "refused": {k: not v.startswith("LOADED") for k, v in refused.items()},
        "without_token_status": no_token[0],
        "with_token_statuses": [s for s, _ in answers],
        "labels": [b.get("label") for _, b in answers],
        "batch_statuses": [item["status"] for item in batch[1]],
        "openapi_label_enum": label_enum,
        "stream_events": [kind for kind, _ in streamed],
        "stream_label": streamed[-1][1].get("outputs", {}).get("label"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    ok = (
        all(summary["refused"].values())
        and no_token[0] == 401
        and all(s == 200 for s in summary["with_token_statuses"])
        and summary["batch_statuses"] == summary["with_token_statuses"]
        and label_enum == ["positive", "negative"]
        and summary["stream_events"][-1] == "prediction"
        and summary["stream_label"] == summary["labels"][0]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
