"""The service layer (rag.service) over a real assistant: asks with follow-ups, checked arguments, uploads
(checked, saved, indexed, refused), removal, and writes one at a time."""

from __future__ import annotations

import hashlib
import io
import shutil
import threading

import pytest

from rag import Assistant, Config, InputError
from rag.index import Index
from rag.service import (LastDocumentError, NothingAddedError, QuestionTooLongError, Service, UnknownDocumentError,
                         UploadResult, resolve_history, safe_upload_name)

SCAMS = "How many people may be held in scam centres across Myanmar?"
COMPOUND = "compound-abuses-myanmar-border-areas-2023"
SEED_IDS = {"sex-trafficking-in-laos", "sex-trafficking-in-malaysia", "sex-trafficking-in-myanmar", COMPOUND}
UPLOAD_LIMIT = 64 * 1024
ZEBRA = b"# Zebra census of Narnia\n\nThe zebra census counted 42 zebras in Narnia in 2023.\n" \
        b"Most zebras live near the lamp post.\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory, seed_index_dir, embedder):
    """A service over a private, writable copy of the seed index, with a small upload limit."""
    root = tmp_path_factory.mktemp("service")
    shutil.copytree(seed_index_dir, root / "index")
    config = Config(max_upload_bytes=UPLOAD_LIMIT)
    assistant = Assistant(Index.load(root / "index", config), config, embedder)
    return Service(assistant, uploads_dir=root / "uploads"), root


@pytest.fixture
def service(world) -> Service:
    return world[0]


def index_state(service: Service) -> tuple:
    """What a refused upload must leave as it was: documents, chunks, the manifest, the uploads folder."""
    manifest = (service.assistant.index.path / "manifest.json").read_bytes()
    uploads = sorted(p.name for p in service.uploads_dir.iterdir()) if service.uploads_dir.exists() else []
    return sorted(service.assistant.documents), len(service.assistant.index.chunks), manifest, uploads


def test_ask_answers_with_a_quote_from_its_document(service):
    turn = service.ask(SCAMS)
    answer = turn.answer
    assert not answer.abstained
    assert turn.asked == turn.searched == SCAMS and not turn.rewritten
    top = answer.citations[0]
    assert top.doc_id == COMPOUND and "120,000" in top.quote
    assert service.assistant.documents[top.doc_id].text[top.start:top.end] == top.quote
    assert f"[{top.number}]" in answer.text


def test_a_follow_up_is_resolved_against_the_history(service):
    first = service.ask("How are women trafficked in Myanmar?")
    turn = service.ask("and in Laos?", history=[first.searched])
    assert turn.searched == "How are women trafficked in Laos?"
    assert turn.answer.citations and turn.answer.citations[0].doc_id == "sex-trafficking-in-laos"
    # What callers that keep only the typed questions (an OpenAI messages list) pass instead.
    assert resolve_history(["How are women trafficked in Myanmar?", "and in Laos?", "  "]) == \
        ["How are women trafficked in Myanmar?", "How are women trafficked in Laos?"]


@pytest.mark.parametrize("k, needle", [(0, "between 1 and 50, got 0"), (51, "got 51"), (-3, "got -3"),
                                       ("5", "whole number, got '5'"), (True, "got True"), (2.0, "got 2.0")])
def test_k_is_checked(service, k, needle):
    with pytest.raises(InputError, match=needle):
        service.ask(SCAMS, k=k)
    with pytest.raises(InputError, match=needle):
        service.retrieve(SCAMS, k=k)


def test_document_filter_is_checked(service):
    with pytest.raises(UnknownDocumentError, match="unknown document id.*no-such-doc.*sex-trafficking-in-laos"):
        service.ask(SCAMS, doc_ids=["no-such-doc"])
    with pytest.raises(InputError, match="at least one document"):
        service.ask(SCAMS, doc_ids=[])
    only_laos = service.retrieve(SCAMS, k=4, doc_ids=["sex-trafficking-in-laos"])
    assert len(only_laos) == 4 and {p.doc_id for p in only_laos} == {"sex-trafficking-in-laos"}
    assert service.doc_filter("sex-trafficking-in-laos") == ["sex-trafficking-in-laos"]  # one id, not its letters
    assert service.doc_filter(sorted(service.assistant.documents)) is None  # every document: no filter


def test_questions_and_history_are_checked(world):
    service = Service(world[0].assistant, uploads_dir=world[1] / "uploads", max_question_chars=100)
    with pytest.raises(QuestionTooLongError, match="150 characters, over the limit of 100"):
        service.ask("why " * 37 + "ok")
    with pytest.raises(QuestionTooLongError, match="history entry"):
        service.ask("and in Laos?", history=["x" * 101])
    with pytest.raises(InputError, match="question is empty"):
        service.ask("  \n ")
    with pytest.raises(InputError, match="must be text, got int"):
        service.ask(42)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="history must be a list"):
        service.ask("and in Laos?", history="How are women trafficked in Myanmar?")  # type: ignore[arg-type]
    length = service.question_length("word " * 300)
    assert length.truncated and length.tokens == 300 and "first 200 tokens" in length.notice()


def test_documents_and_info(service):
    docs = service.documents()
    assert {d.doc_id for d in docs} >= SEED_IDS
    assert all(d.chunks > 0 and d.title and d.path for d in docs)
    info = service.info()
    assert info["chunks"] == sum(d.chunks for d in docs) == len(service.assistant.index.chunks)
    assert docs[0].to_dict().keys() == {"doc_id", "title", "path", "chunks"}


def test_upload_ask_update_and_remove(service):
    before = len(service.assistant.documents)
    result = service.add_files([("Zebra Census (final).md", ZEBRA)])
    assert isinstance(result, UploadResult) and result.ok
    assert result.added == ("zebra-census-final",) and result.files == {"zebra-census-final": "Zebra Census (final).md"}
    assert result.documents == before + 1
    saved = service.uploads_dir / "zebra-census-final.md"
    assert saved.read_bytes() == ZEBRA  # under a generated name, byte for byte
    answer = service.ask("How many zebras did the census count in Narnia?").answer
    assert answer.citations[0].doc_id == "zebra-census-final" and "42 zebras" in answer.citations[0].quote

    # The same file again changes nothing; a new version (here a file object) replaces the old one.
    assert service.add_files([("Zebra Census (final).md", ZEBRA)]).unchanged == ("zebra-census-final",)
    newer = ZEBRA.replace(b"42 zebras", b"57 zebras")
    assert service.add_files([("Zebra Census (final).md", io.BytesIO(newer))]).changed == ("zebra-census-final",)
    assert "57 zebras" in service.assistant.documents["zebra-census-final"].text

    removed = service.remove("zebra-census-final")
    assert removed.removed == "zebra-census-final" and removed.documents == before
    assert removed.deleted_file == str(saved) and not saved.exists()  # a later `rag ingest` will not bring it back
    assert "zebra-census-final" not in service.assistant.documents
    after = service.ask("How many zebras did the census count in Narnia?").answer
    assert all(c.doc_id != "zebra-census-final" for c in after.citations)
    with pytest.raises(UnknownDocumentError, match="unknown document id: zebra-census-final"):
        service.remove("zebra-census-final")


def test_a_file_on_disk_is_uploaded_under_its_client_name(service, tmp_path):
    path = tmp_path / "tmp-upload-123.txt"  # as a web framework stores it
    path.write_bytes(b"The okapi census of Narnia counted 9 okapis in 2023.\n")
    result = service.add_files([path], names=["Okapi census.txt"])
    assert result.added == ("okapi-census",) and result.files["okapi-census"] == "Okapi census.txt"
    assert service.remove("okapi-census").deleted_file is not None


def test_refused_uploads_change_nothing(service):
    bad = {
        "notes.exe": b"MZ\x90\x00 program",
        "binary.txt": b"abc\x00\x01\x02 binary",
        "latin1.txt": "caf\u00e9 cr\u00e8me".encode("latin-1"),
        "empty.md": b"  \n\n ",
        "big.txt": b"zebra " * (UPLOAD_LIMIT // 6 + 10),
        "headings-only.md": b"# Title\n\n## Section\n",
    }
    state = index_state(service)
    result = service.add_files(list(bad.items()))
    assert not result.ok and not result.accepted
    reasons = {r.file: r.reason for r in result.rejected}
    codes = {r.file: r.code for r in result.rejected}
    assert set(reasons) == set(bad)
    assert "only .txt, .md" in reasons["notes.exe"] and codes["notes.exe"] == "unsupported_type"
    assert "binary" in reasons["binary.txt"] and codes["binary.txt"] == "unreadable"
    assert "UTF-8" in reasons["latin1.txt"]
    assert "empty" in reasons["empty.md"]
    assert "over the upload limit of 64 KB" in reasons["big.txt"] and codes["big.txt"] == "too_large"
    assert "no text" in reasons["headings-only.md"]
    assert index_state(service) == state
    with pytest.raises(NothingAddedError, match="nothing was added: notes.exe: only"):
        raise NothingAddedError(result)
    with pytest.raises(InputError, match="path or a \\(name, bytes\\) pair"):
        service.add_files([42])  # type: ignore[list-item]


def test_upload_names_are_generated_never_paths():
    assert safe_upload_name("../../etc/passwd.txt", ".txt") == "passwd.txt"
    assert safe_upload_name("..\\..\\boot.ini.md", ".md") == "boot-ini.md"
    assert safe_upload_name("<img src=x onerror=alert(1)>.md", ".md") == "img-src-x-onerror-alert-1.md"
    assert safe_upload_name(".hidden.txt", ".txt") == "hidden.txt"
    assert safe_upload_name("???.txt", ".txt") == "document.txt"
    digest = hashlib.sha256(b"x").hexdigest()[:8]
    assert safe_upload_name("Sex trafficking in Laos.txt", ".txt", lambda name: True, b"x") == \
        f"sex-trafficking-in-laos-{digest}.txt"


def test_an_upload_does_not_replace_a_seed_of_the_same_name(service):
    text = b"A different report on sex trafficking in Laos, about 1 village.\n"
    result = service.add_files([("Sex trafficking in Laos.txt", text)])
    (doc_id,) = result.added
    assert doc_id.startswith("sex-trafficking-in-laos-") and "sex-trafficking-in-laos" in service.assistant.documents
    service.remove(doc_id)


def test_concurrent_uploads_are_both_kept_while_asks_go_on(service):
    before = set(service.assistant.documents)
    files = {"Quagga count.txt": b"The quagga count of Narnia found 3 quaggas in 2024.\n",
             "Tapir count.txt": b"The tapir count of Narnia found 8 tapirs in 2024.\n"}
    results: list[UploadResult] = []
    errors: list[BaseException] = []

    def upload(item: tuple[str, bytes]) -> None:
        try:
            results.append(service.add_files([item]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(item,)) for item in files.items()]
    for t in threads:
        t.start()
    answered = service.ask(SCAMS).answer  # an ask is not held up by the writes
    for t in threads:
        t.join()
    assert not errors and answered.citations[0].doc_id == COMPOUND
    assert set(service.assistant.documents) == before | {"quagga-count", "tapir-count"}
    for doc_id in ("quagga-count", "tapir-count"):
        service.remove(doc_id)
    assert set(service.assistant.documents) == before


def test_the_last_document_cannot_be_removed(config, embedder, seed_docs):
    only = Assistant.from_documents([seed_docs["sex-trafficking-in-laos"]], config)
    service = Service(only)
    with pytest.raises(LastDocumentError, match="only document"):
        service.remove("sex-trafficking-in-laos")
    assert list(only.documents) == ["sex-trafficking-in-laos"]


def test_upload_result_has_the_ui_shape():
    keys = {"ok", "added", "changed", "unchanged", "rejected", "files", "documents", "chunks", "seconds", "summary"}
    assert UploadResult().to_dict().keys() == keys
