"""Errors of the client.

ClientError
 ├── ProblemError        the server refused: carries its problem document
 └── ServerUnreachable   no answer (connection refused, timeout, ...)
"""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Base of the client's errors."""


class ProblemError(ClientError):
    """The server answered with a problem document (4xx/5xx)."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        self.type: str = problem.get("type", "about:blank")
        self.detail: str = problem.get("detail") or problem.get("title") or f"HTTP {status}"
        super().__init__(f"{status} {self.type}: {self.detail}")


class ServerUnreachable(ClientError):
    """The server could not be reached."""
