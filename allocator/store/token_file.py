"""The tokens file on disk (format in ``allocator.domain.token``): read, watched, appended to."""

from __future__ import annotations

import os
import time
from pathlib import Path

from allocator.domain.token import Principal, TokenRecord, identify, parse_records

RECHECK_SECONDS = 1.0
"""How often a running server looks at the file again: a token created or removed with the CLI
takes effect within this time, without a restart, at the cost of one ``stat`` a second."""


def read_records(path: Path) -> list[TokenRecord]:
    """Return the records in ``path``; raise OSError if it cannot be read, TokenFileError if a
    line is malformed."""
    return parse_records(path.read_text(encoding="utf-8"), source=str(path))


def append_record(path: Path, record: TokenRecord) -> None:
    """Append ``record`` to ``path``, creating the file readable by its owner only (0600).

    An existing file keeps its mode; the append is one ``write`` of one line, so a server reading
    the file meanwhile sees either the old content or the new.
    """
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(descriptor, record.line().encode())
    finally:
        os.close(descriptor)


class TokenFile:
    """The records of one tokens file, read again when the file changes.

    A file that becomes unreadable or malformed while the server runs keeps the last good records
    (and the error is reported by ``problem``), so an editing mistake does not lock everyone out;
    at start an unreadable file is an error (``load`` raises).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problem: str | None = None
        self._stamp = self._stat()
        self._records = read_records(path)
        self._checked = time.monotonic()

    def _stat(self) -> tuple[int, int, int]:
        status = self.path.stat()
        return status.st_mtime_ns, status.st_size, status.st_ino

    def records(self) -> list[TokenRecord]:
        """Return the current records, re-reading the file when it changed."""
        now = time.monotonic()
        if now - self._checked >= RECHECK_SECONDS:
            self._checked = now
            try:
                stamp = self._stat()
                if stamp != self._stamp:
                    self._records = read_records(self.path)
                    self._stamp = stamp
                self.problem = None
            except (OSError, ValueError) as exc:
                self.problem = str(exc)
        return self._records

    def identify(self, token: str) -> Principal | None:
        """Return the principal of ``token``, or None when no stored digest matches."""
        return identify(token, self.records())
