"""``rag loadtest``: many concurrent clients asking a running server, measured on loopback.

Each client is a thread that asks its questions one after another through the
server's named API (``/gradio_api/call/ask``), as a script or another tool
would. A probe asks for ``/info`` meanwhile, to show whether cheap requests
wait behind asks. Everything is bounded: each request by ``timeout`` and the
whole run by ``deadline`` seconds; what did not finish counts as an error.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .bench import _percentile, _questions
from .errors import InputError

log = logging.getLogger(__name__)

#: Seconds between two ``/info`` probes while the clients ask.
INFO_PROBE_INTERVAL = 0.5


@dataclass(frozen=True)
class LoadResult:
    """What ``run_loadtest`` measured (seconds unless named otherwise)."""

    url: str
    clients: int
    requests: int
    ok: int
    errors: int
    error_examples: tuple[str, ...]
    wall_seconds: float
    requests_per_second: float
    p50: float
    p95: float
    max: float
    info_p50: float
    info_p95: float
    info_max: float
    concurrency_limit: int | None = None
    cpu: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (f"{self.clients} clients, {self.requests} asks: {self.ok} ok, {self.errors} errors in "
                f"{self.wall_seconds:.1f}s ({self.requests_per_second:.2f} asks/s); latency p50 {self.p50:.2f}s "
                f"p95 {self.p95:.2f}s max {self.max:.2f}s; /info p50 {self.info_p50:.3f}s p95 {self.info_p95:.3f}s "
                f"max {self.info_max:.3f}s")


def _call(client: Any, url: str, api: str, data: list[Any], timeout: float) -> Any:
    """One named-API call: POST starts it, the event stream returns its result (or its error)."""
    started = client.post(f"{url}/gradio_api/call/{api}", json={"data": data}, timeout=timeout)
    started.raise_for_status()
    event_id = started.json()["event_id"]
    event = None
    with client.stream("GET", f"{url}/gradio_api/call/{api}/{event_id}", timeout=timeout) as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                payload = line.split(":", 1)[1].strip()
                if event == "error":
                    raise RuntimeError(f"server error: {payload[:200]}")
                return json.loads(payload)
    raise RuntimeError(f"the stream for {api} ended without a result (last event {event!r})")


def _client(url: str, auth: tuple[str, str] | None):
    import httpx

    client = httpx.Client(trust_env=False)  # loopback only: never a proxy from the environment
    if auth:
        client.post(f"{url}/login", data={"username": auth[0], "password": auth[1]}).raise_for_status()
    return client


def run_loadtest(url: str, *, clients: int = 50, requests_per_client: int = 5,
                 questions: Sequence[str] | None = None, timeout: float = 60.0, deadline: float = 600.0,
                 auth: tuple[str, str] | None = None) -> LoadResult:
    """``clients`` threads each ask ``requests_per_client`` questions of the server at ``url``."""
    for name, value in (("clients", clients), ("requests_per_client", requests_per_client)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    if timeout <= 0 or deadline <= 0:
        raise InputError(f"timeout and deadline must be positive seconds, got {timeout!r} and {deadline!r}")
    url = url.rstrip("/")
    questions = list(questions or _questions())
    latencies: list[float] = []
    errors: list[str] = []
    info_latencies: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()
    end_by = time.monotonic() + deadline

    def client_loop(number: int) -> None:
        with _client(url, auth) as client:
            for i in range(requests_per_client):
                if time.monotonic() > end_by:
                    with lock:
                        errors.append("deadline passed before the request was sent")
                    continue
                question = questions[(number * requests_per_client + i) % len(questions)]
                started = time.perf_counter()
                try:
                    result = _call(client, url, "ask", [question, 10, None, []], timeout)
                    if not isinstance(result, list) or not isinstance(result[0], dict) or "text" not in result[0]:
                        raise RuntimeError(f"unexpected result {str(result)[:120]}")
                except Exception as exc:  # noqa: BLE001 - every failure is counted and shown, none ends the run
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    continue
                with lock:
                    latencies.append(time.perf_counter() - started)

    def info_probe() -> None:
        with _client(url, auth) as client:
            while not stop.wait(INFO_PROBE_INTERVAL):
                started = time.perf_counter()
                try:
                    _call(client, url, "info", [], timeout)
                except Exception as exc:  # noqa: BLE001
                    log.warning("info probe failed: %s", exc)
                    continue
                info_latencies.append(time.perf_counter() - started)

    probe = threading.Thread(target=info_probe, daemon=True)
    threads = [threading.Thread(target=client_loop, args=(n,), daemon=True) for n in range(clients)]
    started = time.perf_counter()
    probe.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, end_by - time.monotonic()) + timeout)
    wall = time.perf_counter() - started
    stop.set()
    probe.join(timeout)
    unfinished = clients * requests_per_client - len(latencies) - len(errors)
    if unfinished > 0:
        errors.extend(["did not finish within the deadline"] * unfinished)

    def pct(values: list[float], q: float) -> float:
        return round(_percentile(values, q), 3) if values else float("nan")

    return LoadResult(url, clients, clients * requests_per_client, len(latencies), len(errors),
                      tuple(dict.fromkeys(errors))[:5], round(wall, 2), round(len(latencies) / wall, 2),
                      pct(latencies, 0.5), pct(latencies, 0.95), round(max(latencies), 3) if latencies else float("nan"),
                      pct(info_latencies, 0.5), pct(info_latencies, 0.95),
                      round(max(info_latencies), 3) if info_latencies else float("nan"), cpu=_cpu_name(),
                      extra={"mean": round(statistics.fmean(latencies), 3) if latencies else None,
                             "info_probes": len(info_latencies)})


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def serve_and_load(index_dir: Path | None, config: Any, **kwargs: Any) -> LoadResult:
    """Start the UI over ``index_dir`` on a free loopback port, run the load test against it, stop it."""
    import socket

    from ui.app import build_app, start

    from .assistant import Assistant

    assistant = Assistant.load(index_dir, config)
    assistant.ask("warm up")  # load the models now, not inside the first client's request
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = build_app(assistant)
    url = start(app, host="127.0.0.1", port=port)
    try:
        result = run_loadtest(url, **kwargs)
    finally:
        with contextlib.redirect_stdout(io.StringIO()):  # Gradio prints "Closing server…", which is not ours
            app.close()
    return LoadResult(**{**result.to_dict(), "error_examples": result.error_examples,
                         "concurrency_limit": config.serve_concurrency})
