"""Exceptions raised by the library. The CLI turns each into a one-line error."""

from __future__ import annotations


class RagError(Exception):
    """Base class for every error this library raises on purpose."""

    exit_code = 1


class ConfigError(RagError, ValueError):
    """A configuration value is invalid (names the value and the fix)."""

    exit_code = 2


class InputError(RagError, ValueError):
    """A question or argument given by the caller is invalid."""

    exit_code = 2


class DocumentError(RagError):
    """A document could not be read or parsed."""

    exit_code = 3


class EmptyCorpusError(DocumentError):
    """No readable document was found in the given input."""


class IndexError_(RagError):
    """Base for index problems (named with a trailing underscore to avoid the builtin)."""

    exit_code = 4


class IndexNotFoundError(IndexError_):
    """The index directory does not exist or holds no manifest."""


class IndexMismatchError(IndexError_):
    """The index was built with another model, dimension or format than this library uses."""


class IndexCorruptError(IndexError_):
    """The index files disagree with each other or with their recorded hashes."""


class IndexBusyError(IndexError_):
    """Another process is writing this index."""


class IndexWriteError(IndexError_):
    """The index could not be written: a folder that is not writable, a full disk, another OS error.
    The previous version, if any, is left as it was."""


class ModelError(RagError):
    """The embedding model could not be loaded offline."""

    exit_code = 5


class QuestionTruncatedWarning(UserWarning):
    """A question was longer than the model's input and was truncated."""
