"""p50 latency over the first 30 gold questions, answer cache off: Assistant.ask in this process vs
POST /v1/ask to `rag api`'s app served by uvicorn in a second process on 127.0.0.1 (interleaved)."""
import json, os, socket, statistics, subprocess, sys, time
import httpx
from rag import Assistant, Config

with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
server_code = f"""
import uvicorn
from rag import Assistant, Config
from rag.api import create_app
from rag.service import Service
a = Assistant.load(None, Config().replace(answer_cache_size=0))
uvicorn.run(create_app(Service(a)), host="127.0.0.1", port={port}, log_level="warning", lifespan="off")
"""
server = subprocess.Popen([sys.executable, "-c", server_code])
try:
    assistant = Assistant.load(None, Config().replace(answer_cache_size=0))
    questions = [json.loads(line)["question"] for line in open("eval/gold.jsonl")][:30]
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    for _ in range(300):
        try:
            http.get("/v1/models"); break
        except httpx.TransportError:
            time.sleep(0.2)
    for q in questions[:3]:
        assistant.ask(q); http.post("/v1/ask", json={"question": q}).raise_for_status()
    load0 = os.getloadavg()[0]
    py, api, inside = [], [], []
    for q in questions:
        t = time.perf_counter(); a = assistant.ask(q); py.append(time.perf_counter() - t)
        t = time.perf_counter(); r = http.post("/v1/ask", json={"question": q}); api.append(time.perf_counter() - t)
        r.raise_for_status(); assert r.json()["text"] == a.text; inside.append(r.json()["seconds"])
    p50 = lambda xs: statistics.median(xs) * 1e3
    print(f"assistant.ask, in-process:             p50 {p50(py):4.0f} ms  mean {statistics.mean(py)*1e3:4.0f} ms")
    print(f"POST /v1/ask, rag api in 2nd process:  p50 {p50(api):4.0f} ms  mean {statistics.mean(api)*1e3:4.0f} ms"
          f"  (of which in the endpoint: p50 {p50(inside):4.0f} ms)")
    print(f"HTTP + JSON overhead (wall - endpoint): p50 {p50([a - b for a, b in zip(api, inside)]):.1f} ms;"
          f" n={len(questions)}; load average {load0:.2f} -> {os.getloadavg()[0]:.2f}")
finally:
    server.terminate(); server.wait(10)
