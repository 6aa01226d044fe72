"""The project a request acts for."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProjectRef:
    """A project as its API key names it: what the services scope their reads and writes by.

    A plain value rather than a table row: building a detached ORM row for each request cost
    about as much as reading the key."""

    id: str
    name: str
