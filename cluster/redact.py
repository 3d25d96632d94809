"""URIs as they may be shown: a password in them (postgresql://user:pw@db) never is."""

from __future__ import annotations

import re

HIDDEN = "***"
_PASSWORD = re.compile(r"(\w://[^/:@\s]*:)[^/@\s]+@")


def redacted(text: str) -> str:
    """The text (a URI, or a message quoting URIs) with every URI password replaced."""
    return _PASSWORD.sub(rf"\g<1>{HIDDEN}@", text)
