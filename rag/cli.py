"""The ``rag`` command: ingest, ask, chat, info, remove, bench, eval, serve, train-reader.

Library exceptions become one-line ``error: …`` messages with the exception's
exit code; there is never a traceback for a known problem.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any, NoReturn, Sequence

from .config import Config, default_index_dir, parse_overrides
from .embedding import set_offline_environment
from .errors import QuestionTruncatedWarning, RagError

log = logging.getLogger("rag.cli")

#: Documents ``rag info`` lists unless asked for all (an archive may hold a hundred thousand).
INFO_DOCUMENTS = 50


def _config(args: argparse.Namespace) -> Config:
    changes: dict[str, Any] = {}
    if getattr(args, "retriever", None):
        changes["retriever"] = args.retriever
    if getattr(args, "generator", None):
        changes["generator_url"] = args.generator
    if getattr(args, "model", None):
        changes["generator_model"] = args.model
    if getattr(args, "settings", None):
        changes.update(parse_overrides(args.settings))
    return Config().replace(**changes) if changes else Config()


def _index_dir(args: argparse.Namespace, config: Config) -> Path:
    return Path(args.index) if args.index else default_index_dir(config)


def _load(args: argparse.Namespace):
    from .assistant import Assistant

    config = _config(args)
    # The default index is built from seeds/ when missing; an explicit --index must exist.
    return Assistant.load(args.index, config, progress=not args.quiet)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _inert(text: Any) -> str:
    """Text from documents or file names, safe to print to a terminal: control characters (ANSI/OSC escape
    sequences start with ESC) are shown as visible symbols instead of acting on the terminal."""
    return _CONTROL.sub(lambda m: chr(0x2400 + ord(m.group()))
                        if ord(m.group()) < 0x20 else "\u2421" if m.group() == "\x7f" else "\ufffd", str(text))


def _json(data: Any) -> str:
    """JSON for the terminal: non-ASCII text kept readable, but C1 control characters (U+0080-U+009F, of
    which U+009B starts an escape sequence on some terminals) written as \\u escapes like the C0 ones."""
    return re.sub(r"[\x80-\x9f]", lambda m: f"\\u{ord(m.group()):04x}",
                  json.dumps(data, indent=2, ensure_ascii=False))


def _one_line(message: Any) -> str:
    """An error message as one inert line (a file name may hold a newline or an escape sequence)."""
    return _inert(str(message).replace("\r\n", "\n").replace("\n", "\u240a"))


def _print_answer(answer, out=None, width: int = 100) -> None:
    out = out or sys.stdout
    print(textwrap.fill(_inert(answer.text), width), file=out)
    if answer.mode != "extractive":
        print(_inert(f"({answer.mode})"), file=out)
    if answer.citations:
        print("\nSources:", file=out)
        for c in answer.citations:
            where = c.title if not c.section or c.section == c.title else f"{c.title} \u2014 {c.section}"
            page = f"p. {c.page}, " if c.page is not None else ""
            print(_inert(f"  [{c.number}] {where} (doc {c.doc_id}, {page}chars {c.start}\u2013{c.end})"), file=out)
            quote = _inert(" ".join(c.quote.split()))
            print(textwrap.indent(textwrap.fill(f"\u201c{quote}\u201d", width - 6), "      "), file=out)
    elif answer.passages:
        print("\nClosest passages:", file=out)
        for p in answer.passages[:3]:
            snippet = _inert(" ".join(p.text.split()))
            snippet = snippet if len(snippet) <= 240 else snippet[:240].rsplit(" ", 1)[0] + " \u2026"
            print(_inert(f"  - {p.title} \u2014 {p.section} (score {p.score:.3f})"), file=out)
            print(textwrap.indent(textwrap.fill(snippet, width - 6), "      "), file=out)


# ---------------------------------------------------------------------- commands
def cmd_ingest(args: argparse.Namespace) -> int:
    from .assistant import ingest

    config = _config(args)
    folder = _index_dir(args, config)
    started = time.perf_counter()
    # Only a non-default engine is passed on: ingest takes engine= and ray_address= since index format 2.
    engine = {"engine": args.engine, "ray_address": args.ray_address} if args.engine != "local" else {}
    report, _index = ingest(args.paths or None, folder, config, rebuild=args.rebuild, progress=not args.quiet,
                            upgrade=args.upgrade, **engine)
    if args.json:
        data = report.to_dict()
        data["seconds"] = round(time.perf_counter() - started, 2)
        print(_json(data))
        return 0
    for path, reason in report.skipped:
        print(_inert(f"skipped {path}: {reason}"), file=sys.stderr)
    for label, ids in (("added", report.added), ("changed", report.changed), ("removed", report.removed)):
        for doc_id in ids:
            print(_inert(f"{label:8} {doc_id}"))
    print(report.summary() + f" ({time.perf_counter() - started:.1f}s)")
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    assistant = _load(args)
    answer = assistant.ask(args.question, k=args.k, doc_ids=args.doc or None)
    if args.json:
        print(_json(answer.to_dict()))
    else:
        _print_answer(answer)
    return 0


def cmd_retrieve(args: argparse.Namespace) -> int:
    assistant = _load(args)
    passages = assistant.retrieve(args.question, k=args.k, doc_ids=args.doc or None)
    if args.json:
        print(_json([p.to_dict() for p in passages]))
        return 0
    for p in passages:
        print(_inert(f"{p.rank:2}. {p.score:.4f}  {p.title} \u2014 {p.section}  [{p.doc_id} {p.start}\u2013{p.end}]"))
        print(textwrap.indent(textwrap.fill(_inert(" ".join(p.text.split())[:400]), 94), "      "))
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from .conversation import ask_in_context

    assistant = _load(args)
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"Ask about {len(assistant.documents)} documents. Follow-ups (\"and in Laos?\") build on the "
              "previous question. Empty line or Ctrl-D to quit.")
    history: list[str] = []  # the questions as searched, for resolving follow-ups
    while True:
        try:
            question = input("\n? " if interactive else "")
        except EOFError:
            break
        if not question.strip():
            if interactive:
                break
            continue
        if question.strip().lower() in {"quit", "exit", ":q"}:
            break
        try:
            if not interactive:
                print(f"? {question}")
            turn = ask_in_context(assistant, question, history, k=args.k, doc_ids=args.doc or None)
            history.append(turn.searched)
            if turn.rewritten:
                print(f"(searched: {turn.searched})")
            _print_answer(turn.answer)
        except RagError as exc:
            print(f"error: {_one_line(exc)}", file=sys.stderr)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    assistant = _load(args)
    info = assistant.info()
    if args.json:
        print(_json(info))
        return 0
    print(f"index:   {info['index']}")
    print(f"model:   {info['model'].get('name')} ({info['model'].get('dimension')} dims, {info['model'].get('dtype')})")
    print(f"built:   {info['created_at']} (updated {info['updated_at']})")
    reader = info.get("reader", {})
    print(f"reader:  {reader.get('name')} ({reader.get('precision')}, sha256 {reader.get('sha256')}) "
          f"\u2190 {reader.get('folder')}")
    store = info.get("vector_store") or {}
    print(f"chunks:  {info['chunks']} (vectors: {store.get('factory', '?')}, {store.get('kind', '?')})")
    documents = info["documents"]
    shown = documents if args.all else documents[:INFO_DOCUMENTS]
    print(f"documents: {len(documents)}")
    for d in shown:
        print(_inert(f"  {d['doc_id']}: {d['title']} ({d['chunks']} chunks) \u2190 {d['path']}"))
    if len(shown) < len(documents):
        print(f"  \u2026 and {len(documents) - len(shown)} more (rag info --all, or --json, lists every one)")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    assistant = _load(args)
    report = assistant.remove(args.doc_ids)
    print(report.summary())
    return 0


def cmd_bench_scale(args: argparse.Namespace) -> int:
    """``rag bench --scale N``: an index of N generated passages, built, loaded and queried (rag.scale)."""
    from .scale import format_table, run_scale_bench

    config = _config(args)
    if args.vector_index:
        config = config.replace(vector_index=args.vector_index)
    result = run_scale_bench(args.scale, config, out=Path(args.out) if args.out else None,
                             queries=args.queries, keep=args.keep)
    if args.json:
        print(_json(result))
    else:
        print(format_table(result))
        if result.get("index"):
            print(f"index kept at {result['index']}")
    return 0


def cmd_bench_ingest(args: argparse.Namespace) -> int:
    """``rag bench --ingest-docs N``: ingest time against raw SentenceTransformer.encode, and the re-ingest of
    one changed document (rag.ingestbench)."""
    from .errors import InputError
    from .ingestbench import format_report, run_ingest_bench

    if args.scale is not None:
        raise InputError("choose one of --scale and --ingest-docs")
    if args.reuse and not args.workdir:
        raise InputError("--reuse keeps the index of a --workdir; give --workdir DIR")
    result = run_ingest_bench(args.ingest_docs, _config(args), workdir=Path(args.workdir) if args.workdir else None,
                              profile=args.profile, reuse=args.reuse, repeats=args.repeats or 1)
    print(_json(result) if args.json else format_report(result))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if getattr(args, "ingest_docs", None) is not None:
        return cmd_bench_ingest(args)
    if getattr(args, "scale", None) is not None:
        return cmd_bench_scale(args)
    from .bench import run_bench

    result = run_bench(_index_dir(args, _config(args)) if args.index else None, _config(args),
                       repeats=args.repeats or 2)
    print(json.dumps(result, indent=2))
    return 0


def cmd_loadtest(args: argparse.Namespace) -> int:
    from .loadtest import run_loadtest, serve_and_load

    config = _config(args)
    if args.concurrency is not None:
        config = config.replace(serve_concurrency=args.concurrency)
    if args.no_cache:
        config = config.replace(answer_cache_size=0)
    kwargs = {"clients": args.clients, "requests_per_client": args.requests, "timeout": args.timeout,
              "deadline": args.deadline}
    if args.url:
        from ui.app import parse_auth

        result = run_loadtest(args.url, auth=parse_auth(args.auth), **kwargs)
    else:
        result = serve_and_load(_index_dir(args, config) if args.index else None, config, **kwargs)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.summary())
    return 0 if result.errors == 0 else 1


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from ui.app import serve
    except ImportError as exc:  # the UI ships in the same source tree
        raise RagError(f"the UI is not available: {exc}") from exc
    serve(index_dir=args.index, host=args.host, port=args.port, auth=args.auth, open_browser=False,
          config=_config(args))
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    from .api import API_KEY_ENV, build_server, resolve_api_key

    key = resolve_api_key(args.api_key)
    server, url = build_server(args.index, host=args.host, port=args.port, api_key=key, config=_config(args),
                               log_level="info" if args.verbose else "warning")
    auth = "bearer token required" if key else f"no API key (set {API_KEY_ENV} or pass --api-key to require one)"
    print(f"API at {url}/v1 (docs: {url}/docs; {auth}); Ctrl-C to stop", flush=True)
    server.run()
    return 0


def cmd_train_reader(args: argparse.Namespace) -> int:
    from .train import run

    return run(args)


def cmd_eval(args: argparse.Namespace) -> int:
    try:
        from eval.cli import run as run_eval
    except ImportError as exc:
        raise RagError(f"the evaluation package is not available: {exc}") from exc
    return run_eval(args)


# ---------------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    """A usage mistake is one line, like every other error (argparse prints the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {_one_line(message)} (see: {self.prog} --help)\n")


def _add_generator_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--generator", metavar="URL", help="OpenAI-compatible server that writes the answer, every "
                                                      "sentence checked against its quote (or RAG_GENERATOR_URL)")
    p.add_argument("--model", metavar="NAME", help="the generator's model name (or RAG_GENERATOR_MODEL)")


def _add_set_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="override a rag.Config setting, e.g. --set vector_index=ivf or --set ivf_nprobe=256 "
                        "(repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rag", description="Offline question answering with citations.")
    parser.add_argument("--index", help="index folder (default: embeddings/default)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    # The same options are accepted after the subcommand too ("rag serve --index DIR").
    common = _Parser(add_help=False)
    common.add_argument("--index", default=argparse.SUPPRESS, help="index folder (default: embeddings/default)")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log what happens")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add_parser(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kwargs)

    p = add_parser("ingest", help="index files or folders (incremental)")
    p.add_argument("paths", nargs="*", help=".txt/.md/.pdf/.docx/.html files or folders (default: the sources ingested before, "
                                            "or seeds/)")
    p.add_argument("--rebuild", action="store_true", help="re-embed everything; replaces an incompatible index")
    p.add_argument("--upgrade", action="store_true", help="rebuild only if the index was built with another "
                                                          "model or format, or is unreadable")
    p.add_argument("--json", action="store_true")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="ray: read, chunk and embed on a Ray cluster (the ray extra); the index is written here")
    p.add_argument("--ray-address", metavar="HOST:PORT", default=os.environ.get("RAY_ADDRESS") or None,
                   help="the Ray cluster to use (default: RAY_ADDRESS, else a local cluster started for the run)")
    _add_set_argument(p)
    p.set_defaults(func=cmd_ingest)

    for name, func, help_ in (("ask", cmd_ask, "answer a question with numbered sources"),
                              ("retrieve", cmd_retrieve, "show the passages retrieved for a question")):
        p = add_parser(name, help=help_)
        p.add_argument("question")
        if name == "ask":
            _add_generator_arguments(p)
        p.add_argument("--k", type=int, default=None, help="passages to retrieve (default 10)")
        p.add_argument("--doc", action="append", help="only search this document id (repeatable)")
        p.add_argument("--retriever", choices=("dense", "bm25", "hybrid"))
        p.add_argument("--json", action="store_true", help="print JSON")
        _add_set_argument(p)
        p.set_defaults(func=func)

    p = add_parser("chat", help="interactive question prompt (follow-ups build on the previous question)")
    _add_generator_arguments(p)
    p.add_argument("--k", type=int, default=None)
    p.add_argument("--doc", action="append", help="only search this document id (repeatable)")
    p.add_argument("--retriever", choices=("dense", "bm25", "hybrid"))
    _add_set_argument(p)
    p.set_defaults(func=cmd_chat)

    p = add_parser("info", help="what the index holds")
    p.add_argument("--json", action="store_true")
    p.add_argument("--all", action="store_true", help=f"list every document (default: the first {INFO_DOCUMENTS})")
    p.set_defaults(func=cmd_info)

    p = add_parser("remove", help="remove documents from the index by id")
    p.add_argument("doc_ids", nargs="+")
    _add_set_argument(p)
    p.set_defaults(func=cmd_remove)

    p = add_parser("bench", help="measure embedding speed (float32 vs bfloat16) and question latency")
    p.add_argument("--repeats", type=int, help="timed repetitions (default 2; with --ingest-docs: fresh "
                   "ingest / raw encode pairs, default 1)")
    p.add_argument("--scale", type=int, metavar="N", help="instead: build an index of N generated passages "
                   "(SQuAD text with variation) and measure build, disk, memory, load, query times and recall@10")
    p.add_argument("--out", metavar="DIR", help="with --scale: save the index here (kept)")
    p.add_argument("--keep", action="store_true", help="with --scale: keep the temporary index")
    p.add_argument("--queries", type=int, default=200, help="with --scale: questions timed (default 200)")
    p.add_argument("--vector-index", choices=("auto", "flat", "ivf"), help="with --scale: force the vector store")
    p.add_argument("--ingest-docs", type=int, metavar="N", help="instead: ingest N real documents (SciFact, "
                   "SQuAD) and compare with raw SentenceTransformer.encode of the same chunks; then re-ingest "
                   "after changing one document")
    p.add_argument("--profile", action="store_true", help="with --ingest-docs: also profile the ingests by stage")
    p.add_argument("--workdir", metavar="DIR", help="with --ingest-docs: keep the corpus and index here "
                   "(default: a temporary folder)")
    p.add_argument("--reuse", action="store_true", help="with --ingest-docs and --workdir: keep the index "
                   "already built there (or rebuild it from the vectors saved there) and time only the re-ingest")
    p.add_argument("--json", action="store_true", help="with --scale or --ingest-docs: print JSON")
    _add_set_argument(p)
    p.set_defaults(func=cmd_bench)

    p = add_parser("loadtest", help="concurrent clients asking a server on loopback (started here unless --url)")
    p.add_argument("--url", help="a running `rag serve` (default: start one over --index on a free port)")
    p.add_argument("--auth", help="USER:PASSWORD of that server")
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--requests", type=int, default=5, help="asks per client, one after another")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    p.add_argument("--deadline", type=float, default=600.0, help="seconds for the whole run")
    p.add_argument("--concurrency", type=int, help="asks served at once by the started server "
                                                  "(default Config.serve_concurrency)")
    p.add_argument("--no-cache", action="store_true", help="the started server answers every ask afresh")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_loadtest)

    p = add_parser("serve", help="start the web UI")
    _add_generator_arguments(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--auth", help="USER:PASSWORD required to open the UI (or set RAG_AUTH)")
    _add_set_argument(p)
    p.set_defaults(func=cmd_serve)

    p = add_parser("api", help="start the REST and OpenAI-compatible HTTP API (FastAPI on uvicorn)")
    _add_generator_arguments(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", help="bearer token every /v1 request must carry (or set RAG_API_KEY; the "
                                     "environment keeps it out of the process list)")
    _add_set_argument(p)
    p.set_defaults(func=cmd_api)

    p = add_parser("train-reader", help="fine-tune the reader model on SQuAD (see models/reader/README.md)")
    from .train import add_arguments as add_train_arguments

    add_train_arguments(p)
    p.set_defaults(func=cmd_train_reader)

    p = add_parser("eval", help="evaluate against a gold question set or a public benchmark")
    try:
        from eval.cli import add_arguments
    except ImportError:
        add_arguments = None
    if add_arguments is not None:
        add_arguments(p)
    p.set_defaults(func=cmd_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    set_offline_environment()
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # the command as given, recorded by train-reader
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        logging.getLogger("faiss").setLevel(logging.WARNING)
    for noisy in ("sentence_transformers", "bm25s", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not args.verbose else logging.INFO)

    def show_warning(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        if issubclass(category, QuestionTruncatedWarning):
            print(f"warning: {message}", file=sys.stderr)
        else:
            log.debug("%s: %s", category.__name__, message)

    warnings.showwarning = show_warning
    try:
        return int(args.func(args) or 0)
    except RagError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # the library names its own; this is the last net for one the OS raised elsewhere
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"error: {_one_line(f'{where}{exc.strerror or exc}')}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
