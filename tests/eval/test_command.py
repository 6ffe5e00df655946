"""The command recorded with a run reproduces it."""

from __future__ import annotations

from eval.cli import canonical_command
from rag.cli import build_parser


def test_a_fit_records_its_retriever_and_data():
    args = build_parser().parse_args(["eval", "dev.jsonl", "--retriever", "hybrid", "--fit-abstention",
                                      "--squad", "squad2.json", "--sample", "400"])
    assert canonical_command(args) == \
        "rag eval dev.jsonl --retriever hybrid --sample 400 --fit-abstention --squad squad2.json"
