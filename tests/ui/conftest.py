"""Fixtures for the UI tests: a real Gradio server over a private copy of the seed index, on a free port."""

from __future__ import annotations

import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def free_port() -> Callable[[], int]:
    """A function returning a port nobody listens on."""
    return _free_port


@dataclass
class Server:
    """A running UI: its URL, the assistant behind it, where uploads go and where its index lives."""

    url: str
    assistant: object
    app: object
    uploads: Path
    index_dir: Path
    #: Where its conversations are saved.
    history: object = None


@pytest.fixture(scope="module")
def ui_server_factory(tmp_path_factory, seed_index_dir, embedder) -> Iterator[Callable[..., Server]]:
    """Start real servers (each over its own writable copy of the seed index); all are closed after the module."""
    from rag import Assistant, Config
    from rag.index import Index
    from ui.app import build_app, start

    servers: list[Server] = []

    from rag import ConversationStore

    def make(config: Config | None = None, auth: tuple[str, str] | None = None, *,
             index_dir: Path | None = None, history_path: Path | None = None) -> Server:
        """A server over a fresh copy of the seed index, or (a "restart") over ``index_dir``, an index a server
        of this factory already uses; its conversations go to ``history_path`` (default: its own file)."""
        config = config or Config()
        root = tmp_path_factory.mktemp("ui-server")
        if index_dir is None:
            index_dir = root / "index"
            shutil.copytree(seed_index_dir, index_dir)
        assistant = Assistant(Index.load(index_dir, config), config, embedder)
        uploads = root / "uploads"
        history = ConversationStore(history_path or root / "conversations.sqlite3")
        app = build_app(assistant, uploads_dir=uploads, history=history)
        url = start(app, host="127.0.0.1", port=_free_port(), auth=auth)
        server = Server(url, assistant, app, uploads, Path(index_dir), history)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.app.close()
