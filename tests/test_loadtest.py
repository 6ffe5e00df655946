"""``rag loadtest`` against a real server on loopback: concurrent clients, every ask answered."""

from __future__ import annotations

import shutil
import socket

import pytest


@pytest.fixture(scope="module")
def server(tmp_path_factory, seed_index_dir, embedder):
    from rag import Assistant, Config
    from rag.index import Index
    from ui.app import build_app, start

    config = Config()
    folder = tmp_path_factory.mktemp("load") / "index"
    shutil.copytree(seed_index_dir, folder)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = build_app(Assistant(Index.load(folder, config), config, embedder))
    url = start(app, host="127.0.0.1", port=port)
    yield url
    app.close()


def test_concurrent_clients_all_get_answers(server):
    from rag.loadtest import run_loadtest

    questions = ["How many people may be held in scam centres across Myanmar?",
                 "What is the capital of Peru?", "Which groups run the scam compounds?"]
    result = run_loadtest(server, clients=6, requests_per_client=2, questions=questions, timeout=120, deadline=300)
    assert result.errors == 0, result.error_examples
    assert result.ok == result.requests == 12
    assert 0 < result.p50 <= result.p95 <= result.max
    assert "12 asks: 12 ok, 0 errors" in result.summary()


def test_a_server_that_is_down_is_counted_as_errors_not_a_hang():
    from rag.loadtest import run_loadtest

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_loadtest(f"http://127.0.0.1:{port}", clients=2, requests_per_client=2, questions=["q?"],
                          timeout=5, deadline=20)
    assert result.ok == 0 and result.errors == 4 and "ConnectError" in result.error_examples[0]


@pytest.mark.parametrize("kwargs, message", [({"clients": 0}, "clients must be a positive integer"),
                                             ({"requests_per_client": "5"}, "requests_per_client"),
                                             ({"timeout": 0}, "timeout and deadline must be positive")])
def test_bad_load_settings_are_refused(kwargs, message):
    from rag import InputError
    from rag.loadtest import run_loadtest

    with pytest.raises(InputError, match=message):
        run_loadtest("http://127.0.0.1:1", **kwargs)
