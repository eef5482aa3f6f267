"""User-facing errors: one clear line, exit code 2 (see DESIGN.md, 'one rule for long-running commands')."""

from __future__ import annotations


class ThresherError(Exception):
    """An error caused by the user's input or environment; the CLI prints it as one line and exits with 2."""

    exit_code = 2


class UnreadableImage(ThresherError):
    """An image that cannot be decoded (corrupt, truncated, zero bytes, missing)."""

    def __init__(self, example_id: str, reason: str):
        super().__init__(f"unreadable image {example_id!r}: {reason}")
        self.example_id = example_id
        self.reason = reason


def one_line(text: str, limit: int = 400) -> str:
    """Collapse whitespace so an error always fits on one line."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
