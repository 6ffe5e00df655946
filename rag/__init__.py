"""Local, offline question answering over research documents, with verifiable citations.

>>> from rag import Assistant
>>> assistant = Assistant.load()
>>> answer = assistant.ask("How many people may be held in scam centres in Myanmar?")
>>> answer.citations[0].quote in assistant.documents[answer.citations[0].doc_id].text
True
"""

from .assistant import Assistant, ingest
from .config import Config, project_home
from .conversation import (FollowupAnswer, ask_in_context, followup_subjects, is_followup, resolve_followup,
                           speaks_about)
from .answer import ABSTAIN_MESSAGE
from .documents import document_from_bytes, document_from_text, load_document, load_documents, read_text_file
from .errors import (ConfigError, DocumentError, EmptyCorpusError, IndexBusyError, IndexCorruptError,
                     IndexMismatchError, IndexNotFoundError, IndexWriteError, InputError, ModelError, QuestionTruncatedWarning,
                     RagError)
from .generator import GeneratedAnswer, Generator, GeneratorSettings
from .history import ConversationStore, HistoryError
from .reader import Reader, TrainedReader
from .retrieval import Reranker
from .service import Service, UploadResult
from .types import Answer, Chunk, Citation, Document, IngestReport, Passage, Reading, Section, SentenceScore

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "ABSTAIN_MESSAGE",
    "Answer",
    "ask_in_context",
    "Assistant",
    "Chunk",
    "Citation",
    "Config",
    "ConfigError",
    "ConversationStore",
    "Document",
    "document_from_bytes",
    "document_from_text",
    "DocumentError",
    "EmptyCorpusError",
    "followup_subjects",
    "FollowupAnswer",
    "GeneratedAnswer",
    "Generator",
    "GeneratorSettings",
    "HistoryError",
    "IndexBusyError",
    "IndexCorruptError",
    "IndexMismatchError",
    "IndexNotFoundError",
    "IndexWriteError",
    "ingest",
    "IngestReport",
    "InputError",
    "is_followup",
    "load_document",
    "load_documents",
    "ModelError",
    "Passage",
    "project_home",
    "QuestionTruncatedWarning",
    "RagError",
    "read_text_file",
    "Reader",
    "Reading",
    "Reranker",
    "resolve_followup",
    "Section",
    "SentenceScore",
    "Service",
    "speaks_about",
    "TrainedReader",
    "UploadResult",
]
