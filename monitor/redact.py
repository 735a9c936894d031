"""Secrets out of everything printed: ``config check``, errors, logs.

:func:`redact_text` masks, anywhere in a text, the password of a URL's userinfo
(``scheme://user:***@host``) and the value of query or key=value parameters whose name
says secret (password, passwd, pwd, secret, token, key, api_key, sig, signature,
credential, auth: ``?password=***``). :func:`redact_config` masks a dumped settings
tree: every URL-like string as above, and every value under a secret-named key.
:class:`RedactingFormatter` applies :func:`redact_text` to whole log records,
tracebacks included.
"""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "***"
# a name that ends in one of these (db_password, X-Api-Key, access_token) or is sig/auth
_SECRET_NAME = (r"(?:[A-Za-z0-9_.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|"
                r"access[_-]?key|secret[_-]?key|private[_-]?key|subscription[_-]?key|credentials?|"
                r"signature)|sig|auth)")
# scheme://user:password@  (the password may hold anything but '@' and whitespace)
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@?#]*):(?P<pw>[^\s/?#]*)@")
# name=value in a query string, a libpq DSN or a log line
_PARAM = re.compile(r"(?P<head>(?<![A-Za-z0-9_.-])" + _SECRET_NAME + r"\s*=\s*)"
                    r"(?P<value>'[^']*'|\"[^\"]*\"|[^\s&;,'\")]+)", re.IGNORECASE)
_SECRET_KEY = re.compile(r"^(?:" + _SECRET_NAME + r"|api_keys|key)$", re.IGNORECASE)


def redact_text(text: str) -> str:
    """``text`` with URL passwords and secret-named parameter values masked."""
    if not text:
        return text
    out = _USERINFO.sub(lambda m: f"{m.group('head')}:{MASK}@", text)
    return _PARAM.sub(lambda m: f"{m.group('head')}{MASK}", out)


def redact_config(value: Any, key: str = "") -> Any:
    """A settings dump (dicts, lists, scalars) with secrets masked."""
    if isinstance(value, dict):
        return {k: redact_config(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        if key and _SECRET_KEY.match(key):
            return [MASK if item else item for item in value]
        return [redact_config(item, key) for item in value]
    if isinstance(value, str):
        if key and _SECRET_KEY.match(key) and value:
            return MASK
        return redact_text(value)
    return value


class RedactingFormatter(logging.Formatter):
    """Formats with ``inner`` (default: a plain formatter), then masks secrets in the
    whole output: message, arguments, traceback."""

    def __init__(self, inner: logging.Formatter | None = None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(self.inner.format(record))


LOGGERS_WITH_HANDLERS = ("", "uvicorn", "uvicorn.access", "uvicorn.error")


def install_log_redaction(names: tuple[str, ...] = LOGGERS_WITH_HANDLERS) -> None:
    """Wrap the formatter of every handler of these loggers (root, and uvicorn's own,
    which log request lines with their query strings) in a :class:`RedactingFormatter`."""
    for name in names:
        for handler in logging.getLogger(name).handlers:
            if not isinstance(handler.formatter, RedactingFormatter):
                handler.setFormatter(RedactingFormatter(handler.formatter))
