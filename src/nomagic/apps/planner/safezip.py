"""Read members of a zip archive into memory without trusting the archive.

Export zips come from the internet and are opened by people who did not make them, so a zip is
treated as hostile: member names with absolute paths, drive letters or ``..`` components are
refused (we never extract, but a name like that means the archive was crafted); the sizes the
archive *declares* are checked against per-member and total bounds before anything is read, and
while reading, the bytes actually produced are counted and reading stops as soon as they pass
the bound (a zip bomb can lie in its headers). A truncated or corrupt archive is a
``DataFileError`` naming the file. Nothing is written to disk: members are read into memory,
one at a time, only when asked for.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from nomagic.errors import DataFileError

MB = 1024 * 1024
#: Default bounds: no single member above 50 MB, no more than 500 MB read from one archive.
MAX_MEMBER_BYTES = 50 * MB
MAX_TOTAL_BYTES = 500 * MB
_CHUNK = 1024 * 1024


def is_zip(path: str | os.PathLike) -> bool:
    """True when the file starts like a zip archive (by content, not by name)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) in (b"PK\x03\x04", b"PK\x05\x06")
    except OSError:
        return False


def _unsafe_reason(name: str) -> str | None:
    if "\x00" in name:
        return "has a NUL byte in its name"
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        return "has an absolute path"
    if ".." in PurePosixPath(norm).parts:
        return "has a '..' component"
    return None


class SafeZip:
    """A zip archive opened for bounded, in-memory reading of its members.

    Use as a context manager. ``names()`` lists the file members; ``read(name)`` returns a
    member's bytes, counting them against ``max_member`` and the archive-wide ``max_total``.
    """

    def __init__(self, path: str | os.PathLike, *, max_member: int = MAX_MEMBER_BYTES,
                 max_total: int = MAX_TOTAL_BYTES) -> None:
        self.path = Path(path)
        self.label = self.path.name
        self.max_member = max_member
        self.max_total = max_total
        self._read_total = 0
        try:
            self._zf = zipfile.ZipFile(self.path)
        except FileNotFoundError as exc:
            raise DataFileError(f"{self.label}: file not found") from exc
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise DataFileError(f"{self.label}: not a readable zip archive, truncated or corrupt ({exc})") from exc
        try:
            self._check_directory()
        except DataFileError:
            self._zf.close()
            raise
        self._members = {i.filename.replace("\\", "/"): i for i in self._zf.infolist() if not i.is_dir()}

    def _check_directory(self) -> None:
        declared = 0
        for info in self._zf.infolist():
            reason = _unsafe_reason(info.filename)
            if reason:
                raise DataFileError(f"{self.label}: member {info.filename!r} {reason}; refusing the archive")
            if info.file_size > self.max_member:
                raise DataFileError(f"{self.label}: member {info.filename!r} would expand to {info.file_size} bytes, "
                                    f"more than the {self.max_member // MB} MB allowed per member")
            declared += info.file_size
        if declared > self.max_total:
            raise DataFileError(f"{self.label}: members would expand to {declared} bytes in all, more than the "
                                f"{self.max_total // MB} MB allowed")

    def names(self) -> list[str]:
        """The file members' names, with forward slashes, in archive order."""
        return list(self._members)

    def find(self, basename: str) -> str | None:
        """The shortest member name whose last component is ``basename`` (case-insensitive), or None."""
        hits = [n for n in self._members if n.rsplit("/", 1)[-1].lower() == basename.lower()]
        return min(hits, key=len) if hits else None

    def __contains__(self, name: str) -> bool:
        return name in self._members

    def read(self, name: str) -> bytes:
        """The member's bytes, read in chunks and abandoned as soon as a bound is passed."""
        info = self._members.get(name.replace("\\", "/"))
        if info is None:
            raise DataFileError(f"{self.label}: has no member {name!r}")
        where = f"{self.label}: member {name!r}"
        if info.flag_bits & 0x1:
            raise DataFileError(f"{where} is encrypted")
        chunks: list[bytes] = []
        got = 0
        try:
            with self._zf.open(info) as f:
                while True:
                    chunk = f.read(_CHUNK)
                    if not chunk:
                        break
                    got += len(chunk)
                    if got > self.max_member or got > info.file_size:
                        raise DataFileError(f"{where} expands past its declared size or the "
                                            f"{self.max_member // MB} MB bound; refusing it (zip bomb?)")
                    if self._read_total + got > self.max_total:
                        raise DataFileError(f"{self.label}: more than {self.max_total // MB} MB read from the archive; "
                                            "refusing the rest")
                    chunks.append(chunk)
        except DataFileError:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as exc:
            raise DataFileError(f"{where} cannot be read, the archive is truncated or corrupt ({exc})") from exc
        self._read_total += got
        return b"".join(chunks)

    def close(self) -> None:
        self._zf.close()

    def __enter__(self) -> SafeZip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_zip(path: str | os.PathLike, *, max_member: int = MAX_MEMBER_BYTES,
             max_total: int = MAX_TOTAL_BYTES) -> SafeZip:
    """Open ``path`` as a :class:`SafeZip` (raises ``DataFileError`` if it is not a sound zip)."""
    return SafeZip(path, max_member=max_member, max_total=max_total)
