"""Reading source files: bytes to text, and the per-file read errors. No libcst here, so that
a run answered from the cache never imports the parser."""

from __future__ import annotations

import errno
import io
import os
import stat
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
        # O_NONBLOCK: opening a FIFO named *.py must not wait for a writer (no effect on files).
        with open(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):  # FIFO, socket, /dev/zero
                return None, FileError(path, "not a regular file (a pipe, socket or device); not read", kind="read")
            return handle.read(), None
    except FileNotFoundError:
        if os.path.islink(path):
            return None, FileError(path, f"broken symbolic link: its target {os.readlink(path)!r} does not exist",
                                   kind="read")
        return None, FileError(path, "file vanished before it could be read", kind="read")
    except IsADirectoryError:
        return None, FileError(path, "is a directory", kind="read")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, FileError(path, "symbolic link loop: the link leads back to itself", kind="read")
        return None, FileError(path, f"cannot read file: {exc.strerror or exc}", kind="read")


def decode_or_error(path: str, data: bytes) -> Tuple[Optional[str], Optional[FileError]]:
    try:
        return decode(path, data), None
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        return None, FileError(path, f"cannot decode file as {exc.encoding}: {exc.reason} "
                                     f"(byte 0x{data[exc.start]:02x} at line {line}, column {column}); "
                                     "binary data, or a missing coding cookie", line=line, column=column, kind="read")
    except (SyntaxError, LookupError) as exc:
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
