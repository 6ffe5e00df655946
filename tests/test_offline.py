"""No network call anywhere: a fresh process with sockets disabled loads the model, the index and answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest


@pytest.mark.slow
def test_load_and_ask_with_the_network_disabled(seed_index_dir, tmp_path):
    script = textwrap.dedent(f"""
        import json, socket
        def refuse(*args, **kwargs):
            raise RuntimeError("network access attempted: %r" % (args,))
        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        from rag import Assistant
        a = Assistant.load({str(seed_index_dir)!r})
        ans = a.ask("How many people may be held in scam centres in Myanmar?")
        print(json.dumps({{"abstained": ans.abstained, "n": len(ans.citations)}}))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "TIKTOKEN"))}
    env["RAG_HOME"] = str(tmp_path)
    env["RAG_CACHE_DIR"] = str(tmp_path / "cache")  # a fresh tiktoken cache: must be filled offline
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data == {"abstained": False, "n": data["n"]} and data["n"] >= 1
