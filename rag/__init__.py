"""Local, offline question answering over research documents, with verifiable citations.

>>> from rag import Assistant
>>> assistant = Assistant.load()
>>> answer = assistant.ask("How many people may be held in scam centres in Myanmar?")
>>> answer.citations[0].quote in assistant.documents[answer.citations[0].doc_id].text
True
"""

from .assistant import Assistant, ingest
from .config import Config, project_home
from .conversation import is_followup, resolve_followup
from .answer import ABSTAIN_MESSAGE
from .documents import document_from_text, load_documents, read_text_file
from .errors import (ConfigError, DocumentError, EmptyCorpusError, IndexBusyError, IndexCorruptError,
                     IndexMismatchError, IndexNotFoundError, IndexWriteError, InputError, ModelError, QuestionTruncatedWarning,
                     RagError)
from .reader import Reader, TrainedReader
from .retrieval import Reranker
from .types import Answer, Chunk, Citation, Document, IngestReport, Passage, Reading, Section, SentenceScore

__version__ = "0.1.0"

__all__ = [
    "ABSTAIN_MESSAGE",
    "Answer",
    "Assistant",
    "Chunk",
    "Citation",
    "Config",
    "ConfigError",
    "Document",
    "DocumentError",
    "EmptyCorpusError",
    "IndexBusyError",
    "IndexCorruptError",
    "IndexMismatchError",
    "IndexNotFoundError",
    "IndexWriteError",
    "IngestReport",
    "InputError",
    "ModelError",
    "Passage",
    "QuestionTruncatedWarning",
    "RagError",
    "Reader",
    "Reading",
    "Reranker",
    "Section",
    "SentenceScore",
    "TrainedReader",
    "__version__",
    "document_from_text",
    "ingest",
    "is_followup",
    "load_documents",
    "project_home",
    "read_text_file",
    "resolve_followup",
]
