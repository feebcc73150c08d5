"""Turn a file (or a zip member's bytes) into text for the CSV readers, or say clearly why not.

Athletes' files come from spreadsheets, phones and old Windows machines, so the reader accepts:
UTF-8 with or without a byte-order mark; UTF-16 with a BOM (Excel's "Unicode text"); and text that
is not valid UTF-8, which is *read* as Windows-1252 (a superset of latin-1 for printable text;
bytes cp1252 leaves undefined fall back to latin-1) with a note in ``Text.note`` and a
:class:`DataFileNote` warning, since a mangled accent in an activity name is better than
refusing a whole log. gzip-compressed files (``.csv.gz``) are decompressed, bounded.

Refused, as ``DataFileError`` naming the file: an empty file; a binary file (a NUL byte in the
first KB without a UTF-16 BOM): "not a text file"; a file above ``max_bytes`` (200 MB by
default); a line longer than ``max_line`` characters (1 MB by default). The whole file is read
into memory first, so memory is bounded by ``max_bytes`` whatever the line lengths; the
long-line check is skipped for texts shorter than the bound and otherwise jumps from newline to
newline with ``str.find``.
"""

from __future__ import annotations

import codecs
import gzip
import os
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

from nomagic.errors import DataFileError

MB = 1024 * 1024
MAX_FILE_BYTES = 200 * MB
MAX_LINE_CHARS = 1 * MB


class DataFileNote(UserWarning):
    """Something about a data file the reader worked around (e.g. it was not UTF-8)."""


@dataclass(frozen=True)
class Text:
    """A decoded text file: ``text``, the ``encoding`` it was read with, and a ``note`` or ""."""

    text: str
    encoding: str
    note: str = ""


def _read_bounded(path: Path, label: str, max_bytes: int) -> bytes:
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            if head == b"\x1f\x8b":
                return _gunzip(f, label, max_bytes)
            data = f.read(max_bytes + 1)
    except FileNotFoundError as exc:
        raise DataFileError(f"{label}: file not found") from exc
    except IsADirectoryError as exc:
        raise DataFileError(f"{label}: is a folder, not a file") from exc
    except OSError as exc:
        raise DataFileError(f"{label}: cannot be read ({exc.strerror or exc})") from exc
    if len(data) > max_bytes:
        raise DataFileError(f"{label}: is larger than {max_bytes // MB} MB; refusing to read it")
    return data


def _gunzip(f, label: str, max_bytes: int) -> bytes:
    try:
        with gzip.GzipFile(fileobj=f) as g:
            data = g.read(max_bytes + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataFileError(f"{label}: gzip data is truncated or corrupt ({exc})") from exc
    if len(data) > max_bytes:
        raise DataFileError(f"{label}: decompresses to more than {max_bytes // MB} MB; refusing to read it")
    return data


def gunzip_bytes(data: bytes, label: str, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """Decompress gzip ``data`` with a bound on the output (``DataFileError`` if corrupt or too big)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise DataFileError(f"{label}: gzip data is corrupt ({exc})") from exc
    if len(out) > max_bytes:
        raise DataFileError(f"{label}: decompresses to more than {max_bytes // MB} MB; refusing to read it")
    if not d.eof:
        raise DataFileError(f"{label}: gzip data is truncated")
    return out


def decode_text(data: bytes, label: str, *, max_line: int = MAX_LINE_CHARS) -> Text:
    """Decode ``data`` (named ``label`` in messages) by the rules in the module docstring."""
    if not data.strip():
        raise DataFileError(f"{label}: is empty")
    if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) and not data.startswith(codecs.BOM_UTF32_LE):
        try:
            text, enc, note = data.decode("utf-16"), "utf-16", ""
        except UnicodeDecodeError as exc:
            raise DataFileError(f"{label}: starts with a UTF-16 byte-order mark but is not valid UTF-16") from exc
    elif b"\x00" in data[:1024]:
        raise DataFileError(f"{label}: not a text file (it holds NUL bytes; binary data?)")
    else:
        try:
            text, enc, note = data.decode("utf-8-sig"), "utf-8", ""
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            text = _decode_cp1252(data)
            enc = "cp1252"
            note = f"{label}: not UTF-8 (first bad byte on line {line}); read as Windows-1252/latin-1"
            warnings.warn(note, DataFileNote, stacklevel=3)
    if not text.strip():
        raise DataFileError(f"{label}: is empty")
    long_at = _long_line_start(text, max_line)
    if long_at is not None:
        line = text.count("\n", 0, long_at) + 1
        raise DataFileError(f"{label} line {line}: line {line} is longer than {max_line // MB or max_line} "
                            f"{'MB' if max_line >= MB else 'characters'}; refusing the file")
    return Text(text, enc, note)


def _long_line_start(text: str, max_line: int) -> int | None:
    """Where the first line longer than ``max_line`` starts, or None (a text shorter than that has none)."""
    if len(text) <= max_line:
        return None
    pos, n = 0, len(text)
    while pos < n:
        end = text.find("\n", pos)
        end = n if end < 0 else end
        if end - pos > max_line:
            return pos
        pos = end + 1
    return None


def _decode_cp1252(data: bytes) -> str:
    """cp1252, except the five bytes it leaves undefined, which are read as latin-1 (C1 controls)."""
    return data.decode("cp1252", errors="nomagic.latin1_fallback")


def _latin1_fallback(exc: UnicodeError):
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return exc.object[exc.start:exc.end].decode("latin-1"), exc.end


codecs.register_error("nomagic.latin1_fallback", _latin1_fallback)


def read_text(path: str | os.PathLike, *, label: str | None = None, max_bytes: int = MAX_FILE_BYTES,
              max_line: int = MAX_LINE_CHARS) -> Text:
    """Read the text file at ``path`` (``label`` names it in messages; default its file name)."""
    p = Path(path)
    label = label or p.name
    return decode_text(_read_bounded(p, label, max_bytes), label, max_line=max_line)
