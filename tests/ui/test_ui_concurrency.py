"""Concurrent requests against a real server: asks overlap up to Config.serve_concurrency, cheap reads never
wait behind them, index writes stay one at a time.

The server gets its own fresh copy of the seed index, so nothing asked here was answered (and cached) before;
the answers it must give are those of the separate, read-only session assistant over the same seeds.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import pytest

from rag import Config

#: Distinct answerable questions, one per ask slot (cycled when there are more slots).
QUESTIONS = ("Where are women from Myanmar trafficked to?",
             "How many people may be held in scam centres across Myanmar?",
             "Where are women from Laos trafficked to?",
             "Where are women trafficked to in Malaysia?")
#: Seconds asks wait for each other (or to be released) before a test gives up. Generous: it only runs out
#: when the server fails to serve them at the same time, so the passing case never depends on it.
MEET_TIMEOUT_S = 30
#: Passages per ask in the read test (small: the asks there only have to be in flight).
HELD_ASK_K = 2


@pytest.fixture(scope="module")
def server(ui_server_factory):
    return ui_server_factory(Config())


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server.url, verbose=False)


class AskProbe:
    """Wraps ``assistant.ask`` to count the asks inside it at once (server-side, in the request threads).

    ``meet``: every ask waits there until the barrier's number of asks are inside together;
    ``hold``: every ask waits until the event is set (so the asks stay in flight).
    """

    def __init__(self, ask: Callable[..., Any], meet: threading.Barrier | None = None,
                 hold: threading.Event | None = None) -> None:
        self.ask, self.meet, self.hold = ask, meet, hold
        self.lock = threading.Lock()
        self.inside = self.peak = 0
        self.entered = threading.Semaphore(0)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            self.inside += 1
            self.peak = max(self.peak, self.inside)
        self.entered.release()
        try:
            if self.meet is not None:
                try:
                    self.meet.wait()
                except threading.BrokenBarrierError:
                    pass  # the test reports it: the asks were not in flight together
            if self.hold is not None:
                self.hold.wait(MEET_TIMEOUT_S)
            return self.ask(*args, **kwargs)
        finally:
            with self.lock:
                self.inside -= 1


def test_asks_are_served_concurrently_and_correctly(client, server, assistant, monkeypatch):
    slots = server.assistant.config.serve_concurrency
    assert slots >= 2, "serve_concurrency must allow two asks at once"
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(slots)]
    expected = {q: assistant.ask(q) for q in set(questions)}  # one at a time, by another assistant
    probe = AskProbe(server.assistant.ask, meet=threading.Barrier(slots, timeout=MEET_TIMEOUT_S))
    monkeypatch.setattr(server.assistant, "ask", probe)
    jobs = [client.submit(question=q, api_name="/ask") for q in questions]
    results = [job.result(timeout=2 * MEET_TIMEOUT_S) for job in jobs]
    assert not probe.meet.broken, f"the {slots} asks were not in flight together (at most {probe.peak})"
    assert probe.peak == slots
    documents = server.assistant.documents
    for question, result in zip(questions, results):  # each got the answer it gets alone, quoted exactly
        alone = expected[question]
        assert result["searched"] == question and result["text"] == alone.text, question
        assert [(c["doc_id"], c["start"], c["end"]) for c in result["citations"]] == \
            [(c.doc_id, c.start, c.end) for c in alone.citations]
        assert all(documents[c["doc_id"]].text[c["start"]:c["end"]] == c["quote"] for c in result["citations"])


def test_reads_do_not_wait_behind_asks(client, server, monkeypatch):
    slots = server.assistant.config.serve_concurrency
    hold = threading.Event()
    probe = AskProbe(server.assistant.ask, hold=hold)
    monkeypatch.setattr(server.assistant, "ask", probe)
    jobs = [client.submit(question=QUESTIONS[0], k=HELD_ASK_K, api_name="/ask") for _ in range(slots)]
    try:
        for _ in range(slots):  # every ask slot is taken, and held
            assert probe.entered.acquire(timeout=MEET_TIMEOUT_S), f"{slots} asks did not start together"
        info = client.submit(api_name="/info").result(timeout=MEET_TIMEOUT_S)
        listed = client.submit(api_name="/documents").result(timeout=MEET_TIMEOUT_S)
        assert probe.inside == slots and not hold.is_set()  # answered while every ask was still in flight
    finally:
        hold.set()
    assert info["chunks"] == len(server.assistant.index.chunks)
    assert {d["doc_id"] for d in listed["documents"]} == set(server.assistant.documents)
    assert all(len(job.result(timeout=MEET_TIMEOUT_S)["passages"]) == HELD_ASK_K for job in jobs)


def test_writes_run_one_at_a_time_and_asks_share_one_limit(server):
    fns = list(server.app.fns.values())
    default = server.app._queue.default_concurrency_limit

    def limit(group: str) -> int | None:
        """The limit Gradio's queue enforces for a group: the lowest one its events set (None: no limit)."""
        limits = [default if fn.concurrency_limit == "default" else fn.concurrency_limit
                  for fn in fns if fn.concurrency_id == group]
        assert limits, group
        return min((n for n in limits if n is not None), default=None)

    groups = {fn.api_name: fn.concurrency_id for fn in fns if fn.api_name}
    handlers = {fn.fn.__name__: fn.concurrency_id for fn in fns if fn.fn is not None}
    assert groups["ask"] == groups["retrieve"] == handlers["on_ask"]
    assert limit(groups["ask"]) == server.assistant.config.serve_concurrency
    assert groups["upload"] == handlers["on_upload"]
    assert limit(groups["upload"]) == 1
    assert limit(groups["documents"]) is None and limit(groups["info"]) is None
