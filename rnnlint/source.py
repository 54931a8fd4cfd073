"""Reading source files: bytes to text, and the per-file read errors. No libcst here, so that
a run answered from the cache never imports the parser."""

from __future__ import annotations

import io
import tokenize
from typing import Optional, Tuple

from rnnlint.findings import FileError

# A file that mentions none of these cannot hold what the rules look for.
PREFILTER = ("torch", "keras", "tensorflow", "lightning")


def decode(path: str, data: bytes) -> str:
    """Source text from bytes, honouring a BOM or coding cookie (PEP 263)."""
    encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    text = data.decode(encoding)
    if text.startswith("\ufeff"):
        text = text[1:]
    return text


def read_source(path: str) -> str:
    with open(path, "rb") as handle:
        data = handle.read()
    return decode(path, data)


def read_bytes(path: str) -> Tuple[Optional[bytes], Optional[FileError]]:
    """The file's bytes, or the error that says why they cannot be had."""
    try:
        with open(path, "rb") as handle:
            return handle.read(), None
    except FileNotFoundError:
        return None, FileError(path, "file vanished before it could be read", kind="read")
    except IsADirectoryError:
        return None, FileError(path, "is a directory", kind="read")
    except OSError as exc:
        return None, FileError(path, f"cannot read file: {exc.strerror or exc}", kind="read")


def decode_or_error(path: str, data: bytes) -> Tuple[Optional[str], Optional[FileError]]:
    try:
        return decode(path, data), None
    except (SyntaxError, UnicodeDecodeError, LookupError) as exc:
        return None, FileError(path, f"cannot decode file: {exc}", kind="read")


def load(path: str) -> Tuple[Optional[str], Optional[FileError]]:
    data, error = read_bytes(path)
    if data is None:
        return None, error
    return decode_or_error(path, data)


def relevant(text: str) -> bool:
    """Whether the cheap pre-filter lets the file through to the parser."""
    return any(word in text for word in PREFILTER)


def is_notebook(path: str) -> bool:
    return path.endswith(".ipynb")


def to_checked_text(path: str, text: str):  # type: ignore[no-untyped-def]
    """(the Python text to check, the notebook line map or None, or a FileError)."""
    if not is_notebook(path):
        return text, None, None
    from rnnlint.notebooks import NotebookError, to_source

    try:
        joined, line_map = to_source(text)
    except NotebookError as exc:
        return None, None, FileError(path, str(exc), kind="parse")
    return joined, line_map, None
