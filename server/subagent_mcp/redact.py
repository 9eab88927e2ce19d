"""Every form a secret can take in a text, and one function that removes them all.

A key with a stray newline shows up stripped, repr-escaped (``\\n`` as two characters), or as a
bytes repr (``b'Bearer sk-...\\n'``) in library errors, so redacting only the value as given leaks it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import urlsplit

REDACTED = "[redacted]"
MIN_SECRET_CHARS = 8
"""Shorter "secrets" are ignored: redacting them would blank out ordinary words."""


def secret_forms(secret: str) -> list[str]:
    """``secret`` as given and stripped, each also repr-, bytes-repr- and JSON-escaped; longest first."""
    forms: set[str] = set()
    for value in {secret, secret.strip()}:
        forms.add(value)
        forms.add(repr(value)[1:-1])
        forms.add(repr(value.encode("utf-8", "backslashreplace"))[2:-1])
        forms.add(json.dumps(value)[1:-1])
    return sorted((f for f in forms if len(f) >= MIN_SECRET_CHARS), key=len, reverse=True)


def all_forms(secrets: Iterable[str]) -> list[str]:
    """The forms of every secret in ``secrets``, longest first, so no form is left half-replaced."""
    return sorted({f for s in secrets for f in secret_forms(s)}, key=len, reverse=True)


def redact(text: str, forms: list[str]) -> str:
    """``text`` with every occurrence of each form (from ``all_forms``) replaced by ``[redacted]``."""
    for form in forms:
        if form in text:
            text = text.replace(form, REDACTED)
    return text


def url_password(url: str) -> str | None:
    """The password in a URL such as ``postgresql://user:password@host/db``, if it has one."""
    try:
        return urlsplit(url).password
    except ValueError:
        return None
