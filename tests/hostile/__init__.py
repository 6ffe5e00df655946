"""Hostile-input suite: bad questions, bad documents, damaged indexes, crashes and concurrent writers.

Every case asserts a clear error (a ``rag.errors.RagError`` subclass, or for the CLI a non-zero exit code with
exactly one ``error:`` line on stderr and no traceback) or correct handling, and afterwards that the index is
intact: it loads, answers a question, and holds the same documents as before.
"""
