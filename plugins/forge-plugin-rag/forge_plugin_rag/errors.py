"""Errors of the RAG plugin: every one is a user error with a message naming the file,
collection or field and the problem (the CLI prints it; the endpoint maps it to a 4xx)."""

from __future__ import annotations

from forge_kernel.errors import ForgeError


class RAGError(ForgeError):
    """Base class; ``status`` is the HTTP status the endpoint answers with."""

    status = 400
    code = "invalid_value"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        """The request field at fault (HTTP ``error.param``), when there is one."""


class UnsupportedFileType(RAGError):
    code = "unsupported_file_type"


class DocumentTooLarge(RAGError):
    status = 413
    code = "file_too_large"


class UnreadableDocument(RAGError):
    code = "unreadable_document"


class EncryptedDocument(UnreadableDocument):
    code = "encrypted_document"


class EmptyDocument(UnreadableDocument):
    code = "empty_document"


class CollectionNotFound(RAGError):
    status = 404
    code = "collection_not_found"


class DocumentNotFound(RAGError):
    status = 404
    code = "document_not_found"


class EmptyCollection(RAGError):
    code = "empty_collection"


class InvalidName(RAGError):
    code = "invalid_name"


class EmbedderMismatch(RAGError):
    status = 409
    code = "embedder_mismatch"
