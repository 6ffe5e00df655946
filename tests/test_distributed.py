"""Distributed ingestion on a real local Ray cluster of 2 CPUs: the same documents, chunks and vectors as the
single-process path (``load_documents`` + ``Chunker`` + ``Embedder``)."""

from __future__ import annotations

import inspect
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason='Ray is the "ray" extra: pip install -e ".[ray]" (make install does)')

from rag.chunking import Chunker  # noqa: E402
from rag.cli import build_parser  # noqa: E402
from rag.config import Config  # noqa: E402
from rag.distributed import WORKER_ENV, prepare_with_ray  # noqa: E402
from rag.documents import load_document, load_documents  # noqa: E402
from rag.errors import ConfigError, ModelError  # noqa: E402
from rag.index import embedded_text  # noqa: E402

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
ATOL = 1e-4

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    """A local 2-CPU Ray cluster for this module (prepare_with_ray uses it and leaves it running)."""
    if ray.is_initialized():
        pytest.skip("this process is already connected to a Ray cluster")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             runtime_env={"env_vars": dict(WORKER_ENV)})
    yield ray
    ray.shutdown()


@pytest.fixture
def corpus(tmp_path) -> Path:
    """Two seeds with their catalogue, text and Markdown, an HTML page, two files of the same name, an
    unreadable file, and a file named like a later one that fails (so the later one keeps the plain id)."""
    root = tmp_path / "corpus"
    root.mkdir()
    for name in ("sex-trafficking-in-laos.txt", "sex-trafficking-in-malaysia.txt", "catalogue.json"):
        shutil.copy(SEEDS / name, root / name)
    (root / "a").mkdir()
    (root / "b").mkdir()
    (root / "c").mkdir()
    (root / "d").mkdir()
    (root / "a" / "notes.md").write_text(
        "# Harbour notes\n\n## The north pier\n\nThe lighthouse on the north pier was designed by Maria Soares. "
        "It was completed in 1886.\n\n## Ferries\n\nThe blue line leaves at 07:15 and costs 4 euros.\n",
        encoding="utf-8")
    (root / "b" / "notes.txt").write_text("Second notes file. It has the same name as another file in the "
                                          "corpus, so its id is suffixed from its path.\n", encoding="utf-8")
    (root / "c" / "report.txt").write_bytes(b"\x00\x01binary\x00")  # skipped: not text
    (root / "d" / "report.html").write_text(
        "<html><head><title>Tide report</title></head><body><nav>Home | About</nav><h1>Tides</h1>"
        "<p>High tide at the harbour is at 14:02 on Monday. Low tide follows six hours later.</p></body></html>",
        encoding="utf-8")
    (root / "indexed.txt").write_text("A document the index already holds. It is loaded but not embedded.\n",
                                      encoding="utf-8")
    return root


def test_a_cluster_started_here_is_shut_down_and_a_worker_error_arrives_as_itself(tmp_path):
    """Runs first, before the module's cluster: prepare_with_ray starts a local cluster of its own."""
    if ray.is_initialized():
        pytest.skip("this process is already connected to a Ray cluster")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("A short text. It has two sentences.\n", encoding="utf-8")
    (tmp_path / "not-a-model").mkdir()  # a folder passes the driver's check; loading it on a worker fails
    config = Config().replace(model_name=str(tmp_path / "not-a-model"))
    with pytest.raises(ModelError, match="could not load model") as caught:
        prepare_with_ray([tmp_path / "docs"], config, num_actors=1)
    assert "\n" not in str(caught.value)  # one line, as the CLI prints it
    assert not ray.is_initialized()  # the cluster it started is gone, error or not


def test_ray_matches_the_single_process_path(cluster, corpus, config, embedder):
    indexed = load_document(corpus / "indexed.txt", doc_id="indexed")
    docs, skipped, prepared = prepare_with_ray([corpus], config, known={"indexed": indexed.sha256})
    assert ray.is_initialized()  # the caller's cluster is left running

    local_docs, local_skipped = load_documents([corpus])
    assert skipped == local_skipped
    assert [p for p, _r in skipped] == [str(corpus / "c" / "report.txt")]
    assert [d.doc_id for d in docs] == [d.doc_id for d in local_docs]
    ids = [d.doc_id for d in docs]
    assert "sex-trafficking-in-laos" in ids and "notes" in ids and "report" in ids  # d/report: plain id
    assert any(i.startswith("notes-") for i in ids)  # b/notes.txt after a/notes.md
    for doc, local in zip(docs, local_docs):
        assert (doc.doc_id, doc.title, doc.path, doc.sha256, doc.text) == \
               (local.doc_id, local.title, local.path, local.sha256, local.text)
        assert (doc.sections, doc.blocks, doc.pages, doc.meta) == (local.sections, local.blocks, local.pages,
                                                                    local.meta)
    assert docs[ids.index("sex-trafficking-in-laos")].title == "Sex trafficking in Laos"  # from the catalogue

    # Every document but the one the index holds comes with its chunks and vectors.
    assert set(prepared) == {d.sha256 for d in local_docs} - {indexed.sha256}
    chunker = Chunker.from_config(config)
    for local in local_docs:
        if local.sha256 == indexed.sha256:
            continue
        got = prepared[local.sha256]
        chunks = chunker.chunk(local)
        assert list(got.chunks) == chunks  # doc id, section, span, text, kind, tokens
        assert got.vectors.dtype == np.float32 and got.vectors.shape == (len(chunks), embedder.dimension)
        expected = embedder.encode([embedded_text(c, local.title, config.embed_headers) for c in chunks])
        np.testing.assert_allclose(got.vectors, expected, atol=ATOL, rtol=0)


def test_without_ray_the_error_names_the_extra(monkeypatch, tmp_path):
    (tmp_path / "a.txt").write_text("Some text. More text.\n", encoding="utf-8")
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where the extra is not installed
    with pytest.raises(ConfigError, match=r'pip install -e "\.\[ray\]"'):
        prepare_with_ray([tmp_path], Config())


def test_cli_ingest_takes_an_engine_and_a_ray_address(monkeypatch):
    parser = build_parser()
    args = parser.parse_args(["ingest", "docs", "--engine", "ray", "--ray-address", "10.0.0.1:6379"])
    assert (args.engine, args.ray_address) == ("ray", "10.0.0.1:6379")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.2:6379")
    args = build_parser().parse_args(["ingest", "docs"])
    assert (args.engine, args.ray_address) == ("local", "10.0.0.2:6379")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ingest", "--engine", "spark"])


def test_ingest_with_the_ray_engine_writes_the_same_index(cluster, corpus, tmp_path, config, embedder):
    from rag import assistant
    from rag.index import Index

    if "engine" not in inspect.signature(assistant.ingest).parameters:  # lands with index format 2
        pytest.skip("rag.assistant.ingest takes no engine= yet")
    local_report, _ = assistant.ingest([corpus], tmp_path / "local", config, embedder=embedder, engine="local")
    ray_report, _ = assistant.ingest([corpus], tmp_path / "ray", config, embedder=embedder, engine="ray")
    assert (ray_report.added, ray_report.skipped) == (local_report.added, local_report.skipped)
    assert ray_report.chunks_total == local_report.chunks_total

    local, distributed = Index.load(tmp_path / "local", config), Index.load(tmp_path / "ray", config)
    assert set(distributed.documents) == set(local.documents)
    chunks = list(local.chunks)
    spans = [(c.doc_id, c.section, c.start, c.end, c.kind) for c in chunks]
    assert [(c.doc_id, c.section, c.start, c.end, c.kind) for c in distributed.chunks] == spans
    ids = local.vectors.all_ids()  # ascending, as index.chunks iterates
    np.testing.assert_array_equal(distributed.vectors.all_ids(), ids)
    assert distributed.vectors.kind == local.vectors.kind == "flat"  # exact vectors, so a tight tolerance
    np.testing.assert_allclose(distributed.reconstruct(ids), local.reconstruct(ids), atol=ATOL, rtol=0)
    titles = {i: d.title for i, d in local.documents.items()}
    expected = embedder.encode([embedded_text(c, titles[c.doc_id], config.embed_headers) for c in chunks])
    np.testing.assert_allclose(distributed.reconstruct(ids), expected, atol=ATOL, rtol=0)
