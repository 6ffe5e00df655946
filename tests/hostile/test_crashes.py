"""Crashes and concurrent writers: ``kill -9`` of a real ``rag ingest`` at several points, and two ``rag ingest``
processes writing the same index at once.

After a crash the previous index loads with its old documents (or, if the kill came after the swap, with the
new ones too: never anything in between), and a re-run completes and leaves nothing behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from .conftest import assert_intact, doc_state, leftovers, popen_rag, write_files

N_FILES = 200


def _corpus(folder: Path, n: int, prefix: str) -> tuple[Path, set[str]]:
    files = {f"{prefix}-{i:03d}.txt": (f"Record {prefix} {i} says the {prefix} warehouse {i} stores {i * 7} crates "
                                       f"of tea. The crates arrived by train in week {i % 52}.\n")
             for i in range(n)}
    write_files(folder, files)
    return folder, {Path(name).stem for name in files}


class _StderrWatcher:
    """Reads a process's stderr in the background; ``wait_for(text)`` blocks until ``text`` was printed."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.text = ""
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            chunk = self.proc.stderr.read1(4096)
            if not chunk:
                break
            with self._cond:
                self.text += chunk.decode("utf-8", "replace")
                self._cond.notify_all()

    def wait_for(self, needle: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while needle not in self.text:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return needle in self.text
                self._cond.wait(min(left, 0.2))
            return True


KILL_POINTS = {
    "after-0.5s": 0.5,
    "after-2s": 2.0,
    "after-5s": 5.0,
    "during-embedding": "Embedding:",
    "when-embedding-ends": "100%",
}


@pytest.mark.parametrize("when", [pytest.param(v, id=k, marks=[pytest.mark.slow] if isinstance(v, str) else [])
                                  for k, v in KILL_POINTS.items()])
def test_kill_9_during_ingest_keeps_the_previous_index(when, tmp_path, idx, base_state, config, embedder,
                                                       reader, cli):
    docs, new_ids = _corpus(tmp_path / "many", N_FILES, "depot")
    proc = popen_rag(["--index", idx, "ingest", docs], cwd=tmp_path, stdout=subprocess.DEVNULL,
                     stderr=subprocess.PIPE, start_new_session=True)
    watcher = _StderrWatcher(proc)
    try:
        if isinstance(when, float):
            time.sleep(when)
        else:
            assert watcher.wait_for(when, timeout=150), f"never printed {when!r}: {watcher.text[-500:]}"
            if when == "Embedding:":
                time.sleep(0.5)
        killed = proc.poll() is None
        if killed:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert killed, f"the ingest finished before the kill at {when!r}; make the corpus larger"
    assert proc.returncode == -signal.SIGKILL

    # All or nothing: the old documents, or (kill after the swap) the old and all the new ones.
    state = doc_state(idx, config)
    assert {k: v for k, v in state.items() if k in base_state} == base_state
    assert set(state) in (set(base_state), set(base_state) | new_ids), \
        f"a half-written index: {len(set(state) - set(base_state))} of {N_FILES} new documents"
    assert_intact(idx, state, config, embedder, reader)

    # A re-run completes and cleans up after the dead writer.
    run = cli("-q", "--index", idx, "ingest", docs)
    assert run.code == 0, run.err
    assert_intact(idx, set(base_state) | new_ids, config, embedder, reader,
                  question="What does the depot warehouse 17 store?")
    assert not leftovers(idx), leftovers(idx)


@pytest.mark.slow
def test_two_concurrent_ingests_both_finish_with_both_sets(tmp_path, idx, base_state, config, embedder, reader):
    """The second writer waits for the first instead of failing; afterwards the index holds both sets and
    no chunk twice. Readers meanwhile always see a complete index."""
    docs_a, ids_a = _corpus(tmp_path / "a", 40, "north")
    docs_b, ids_b = _corpus(tmp_path / "b", 40, "south")
    procs = [popen_rag(["-q", "--index", idx, "ingest", docs], cwd=tmp_path, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE) for docs in (docs_a, docs_b)]
    seen: list[frozenset[str]] = []
    reader_errors: list[str] = []
    try:
        while any(p.poll() is None for p in procs):
            try:
                seen.append(frozenset(doc_state(idx, config)))
            except Exception as exc:  # noqa: BLE001 - collected and reported below
                reader_errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.05)
        results = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, f"exit {p.returncode}: {err.decode(errors='replace').strip()}"
        assert b"Traceback" not in err
    state = doc_state(idx, config)
    assert set(state) == set(base_state) | ids_a | ids_b, \
        f"missing: {sorted((set(base_state) | ids_a | ids_b) - set(state))[:5]}"
    assert_intact(idx, state, config, embedder, reader, question="What does the south warehouse 3 store?")
    assert not leftovers(idx)
    allowed = {frozenset(base_state), frozenset(set(base_state) | ids_a), frozenset(set(base_state) | ids_b),
               frozenset(set(base_state) | ids_a | ids_b)}
    assert not reader_errors, reader_errors[:3]
    assert all(s in allowed for s in seen), "a reader saw a half-written index"
