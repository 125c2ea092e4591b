"""``mmlab`` commands of the ml area, registered on the main app by :func:`register` (heavy imports inside commands)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
