"""The ASGI server (``oobleck serve``: FastAPI on uvicorn) against the standard-library one it replaced.

One run on loopback, the same program behind each server in turn, the same load generator:

- **fake**: ``Predict("question -> answer")`` on a scripted LM that sleeps ``--delay`` seconds
  (20 ms by default) and answers, many calls at once. What a request costs beyond the delay is the framework's.
- **model**: ``Predict("text -> label: Literal[...]")`` on the embedded SmolLM2 model
  (``LocalLM``, 4 decoding slots, no cache): what a user of the embedded model sees.

Each server runs in a child process (``--child``), so the load generator (threads with one
``http.client`` connection per request, in this process) does not share its interpreter lock.
For each number of concurrent clients (1 to 200), a closed loop: every client sends its next
request when the previous one is answered, until ``--requests`` (at least one per client)
have been sent. Recorded per server and level: requests per second, p50/p99 latency and
failures (any status but 200, or a connection error). The levels alternate which server goes
first. Both servers run with the same limits (16 programs at once, a queue wait of up to
``--queue-timeout`` seconds, 512 connections). For the fake program a third server, ``floor``,
is a bare Starlette app on the same uvicorn protocol, with the same thread hop and a fixed
answer: what uvicorn's transport costs before any oobleck code runs.

The baseline is the server at commit ``cff1a88`` (``git show cff1a88:oobleck/serve.py``),
imported from a temporary file.

Usage: ``PYTHONPATH=. python benchmarks/serve.py [--levels 1,10,50,100,200 --requests 400]``
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, machine, write_result  # noqa: E402

BASELINE_COMMIT = "cff1a88"
LABELS = "Literal['positive', 'negative']"
TEXTS = ["a warm, funny and moving film", "dull, slow and far too long", "an instant classic", "painfully boring"]
SERVERS = ("stdlib", "asgi")
# For the fake program also uvicorn's floor: a bare Starlette app on the same protocol class,
# the same thread hop and a fixed answer, no oobleck: what the transport alone costs.
FAKE_SERVERS = ("stdlib", "asgi", "floor")


# ---------------------------------------------------------------------------- child: one server


def _baseline_module(folder: Path) -> Any:
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{BASELINE_COMMIT}:oobleck/serve.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = folder / "oobleck_serve_baseline.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("oobleck_serve_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def child(server: str, program: str, delay: float, queue_timeout: float) -> None:
    """Serve one program on a free port; print its address; serve until SIGTERM."""
    from oobleck import BaseLM, LocalLM, Predict
    from oobleck.artifact import load
    from oobleck.lm.types import Choice, LMResponse, Usage

    class Sleepy(BaseLM):
        """Answers after ``delay`` seconds, many at once (FakeLM answers one call at a time)."""

        def complete(self, request: Any) -> Any:
            time.sleep(delay)
            return LMResponse(choices=(Choice(text="[[ ## answer ## ]]\nParis"),), usage=Usage(calls=1))

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if program == "fake":
            Predict("question -> answer").save(folder / "p.json")
            lm: Any = Sleepy()
        else:
            Predict(f"text -> label: {LABELS}").save(folder / "p.json")
            lm = LocalLM(max_tokens=16, n_parallel=4)
        art = load(folder / "p.json", lm=lm)
        if program == "model":
            art(text=TEXTS[0])  # load the model before the clock starts
        limits = {"max_inflight": 16, "queue_timeout": queue_timeout, "max_connections": 512, "backlog": 512}
        if server == "stdlib":
            srv = _baseline_module(folder).make_server(art, port=0, **limits)
        elif server == "floor":
            srv = _floor_server(delay)
        else:
            from oobleck.serve import make_server

            srv = make_server(art, port=0, **limits)
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=srv.shutdown).start())
        print(json.dumps({"port": srv.server_address[1]}), flush=True)
        srv.serve_forever()
        srv.server_close()


def _floor_server(delay: float) -> Any:
    import asyncio
    import concurrent.futures

    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from oobleck.serve._server import Server

    pool = concurrent.futures.ThreadPoolExecutor(16)

    async def answer(request: Any) -> Response:
        json.loads(await request.body())
        await asyncio.get_running_loop().run_in_executor(pool, time.sleep, delay)
        return Response(b'{"answer": "Paris"}', media_type="application/json")

    app = Starlette(routes=[Route("/", answer, methods=["POST"])])
    return Server(app, host="127.0.0.1", port=0, backlog=512, max_connections=512)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- parent: the load


def _one(port: int, body: bytes) -> tuple[int | str, float]:
    started = time.perf_counter()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        conn.request("POST", "/", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        json.loads(resp.read())
        status: int | str = resp.status
        conn.close()
    except (OSError, ValueError, http.client.HTTPException) as exc:
        status = type(exc).__name__
    return status, time.perf_counter() - started


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` and its threads so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_level(port: int, program: str, clients: int, requests: int, pid: int | None = None) -> dict[str, Any]:
    """``clients`` closed-loop clients sending ``requests`` requests in all."""
    total = max(requests, clients)
    bodies = [
        json.dumps({"question": f"q{i}"} if program == "fake" else {"text": TEXTS[i % len(TEXTS)]}).encode()
        for i in range(total)
    ]
    lock = threading.Lock()
    next_index = 0
    results: list[tuple[int | str, float]] = []
    barrier = threading.Barrier(clients)

    def client() -> None:
        nonlocal next_index
        barrier.wait(60)
        while True:
            with lock:
                if next_index >= total:
                    return
                i = next_index
                next_index += 1
            got = _one(port, bodies[i])
            with lock:
                results.append(got)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    cpu_before = cpu_seconds(pid) if pid else None
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    cpu = cpu_seconds(pid) - cpu_before if pid and cpu_before is not None else None
    ok = sorted(s for status, s in results if status == 200)
    failures: dict[str, int] = {}
    for status, _ in results:
        if status != 200:
            failures[str(status)] = failures.get(str(status), 0) + 1
    return {
        "clients": clients,
        "requests": total,
        "wall_s": round(wall, 3),
        "requests_per_s": round(len(ok) / wall, 2),
        "latency_ms_p50": round(1000 * statistics.median(ok), 2) if ok else None,
        "latency_ms_p99": round(1000 * ok[min(len(ok) - 1, int(0.99 * len(ok)))], 2) if ok else None,
        "failures": sum(failures.values()),
        "failure_kinds": failures,
        # CPU the server process spent per request: its overhead, little moved by other jobs' load
        "server_cpu_ms_per_request": round(1000 * cpu / total, 3) if cpu is not None else None,
    }


class Child:
    """One server in a child process."""

    def __init__(self, server: str, program: str, args: argparse.Namespace) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, __file__, "--child", server, program, "--delay", str(args.delay)]
        cmd += ["--queue-timeout", str(args.queue_timeout)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the {server} server for {program} did not start (exit {self.proc.wait()})")
        self.port = int(json.loads(line)["port"])

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_program(program: str, levels: list[int], requests: int, args: argparse.Namespace) -> dict[str, Any]:
    servers = FAKE_SERVERS if program == "fake" else SERVERS
    rows: dict[str, list[dict[str, Any]]] = {s: [] for s in servers}
    children = {s: Child(s, program, args) for s in servers}
    try:
        for port in (c.port for c in children.values()):
            load_level(port, program, 1, 4)  # warm-up, unrecorded
        for i, clients in enumerate(levels):
            order = servers if i % 2 == 0 else servers[::-1]
            for server in order:
                row = load_level(children[server].port, program, clients, requests, children[server].proc.pid)
                row["order"] = order.index(server)
                rows[server].append(row)
                print(f"{program} {server:6} {clients:3} clients: {row}", file=sys.stderr)
    finally:
        for c in children.values():
            c.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("SERVER", "PROGRAM"), help=argparse.SUPPRESS)
    parser.add_argument("--delay", type=float, default=0.02, help="the fake LM's delay in seconds (default 0.02)")
    parser.add_argument("--levels", default="1,1,1,1,10,50,100,200", help="concurrent clients (fake program)")
    parser.add_argument("--model-levels", default="1,1,16,200", help="concurrent clients (embedded model)")
    parser.add_argument("--requests", type=int, default=400, help="requests per level (fake program)")
    parser.add_argument("--model-requests", type=int, default=48, help="requests per level (embedded model)")
    parser.add_argument("--queue-timeout", type=float, default=300.0, help="both servers' wait for a slot")
    parser.add_argument("--programs", default="fake,model")
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.delay, args.queue_timeout)
        return
    started = time.perf_counter()
    result: dict[str, Any] = {
        "baseline": f"oobleck/serve.py at {BASELINE_COMMIT} (http.server, a thread per connection)",
        "new": "oobleck.serve.make_server (oobleck.asgi_app on uvicorn, h11)",
        "delay_s": args.delay,
        "limits": {"max_inflight": 16, "queue_timeout_s": args.queue_timeout, "max_connections": 512},
        "client": "threads in the parent process, one http.client connection per request, closed loop",
        "programs": {},
    }
    programs = args.programs.split(",")
    if "fake" in programs:
        levels = [int(x) for x in args.levels.split(",")]
        result["programs"]["fake"] = run_program("fake", levels, args.requests, args)
    if "model" in programs:
        levels = [int(x) for x in args.model_levels.split(",")]
        result["programs"]["model"] = run_program("model", levels, args.model_requests, args)
    result["summary"] = summary(result)
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    result["machine"] = machine()
    write_result("serve", result)


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The goals: no failure at the highest level; overhead per request no worse than the baseline's."""
    out: dict[str, Any] = {}
    fake = result["programs"].get("fake")
    if fake:
        ones = {s: [r for r in fake[s] if r["clients"] == 1] for s in fake}
        delay_ms = 1000 * result["delay_s"]
        overhead = {s: round(statistics.median(r["latency_ms_p50"] for r in ones[s]) - delay_ms, 2) for s in fake}
        cpu = {s: round(statistics.median(r["server_cpu_ms_per_request"] for r in ones[s]), 3) for s in fake}
        out["latency_over_delay_ms_at_1_client"] = overhead
        out["server_cpu_ms_per_request_at_1_client"] = cpu
        out["overhead_no_worse"] = overhead["asgi"] <= overhead["stdlib"] and cpu["asgi"] <= cpu["stdlib"]
    for program, rows in result["programs"].items():
        top = max(r["clients"] for r in rows["asgi"])
        out[f"{program}_failures_at_{top}_clients"] = {
            s: next(r["failures"] for r in rows[s] if r["clients"] == top) for s in SERVERS
        }
    out["no_failures_at_top"] = all(
        v["asgi"] == 0 for k, v in out.items() if k.endswith("_clients") and isinstance(v, dict)
    )
    return out


if __name__ == "__main__":
    main()
