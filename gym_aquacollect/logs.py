"""How the library reports: one stdlib ``logging`` logger, ``"gym_aquacollect"``, shown through loguru by default.

Library modules log through :data:`logger` (``logger.warning("... {}", value)``: ``str.format`` placeholders,
formatted only when the level is enabled). Callers filter or route it with the standard library::

    import logging
    logging.getLogger("gym_aquacollect").setLevel(logging.ERROR)   # only errors
    gym_aquacollect.logs.use_stdlib_logging()                      # no loguru: records go to your handlers

By default (what the CLI and progress output use) records are forwarded to loguru's sinks, so a loguru sink
(``loguru.logger.add(...)``) sees them as before.

Example:
    >>> import logging
    >>> seen = []
    >>> h = logging.Handler(); h.emit = lambda r: seen.append(r.getMessage())
    >>> logging.getLogger("gym_aquacollect").addHandler(h)
    >>> logger.warning("column {!r} dropped", "x")
    >>> logging.getLogger("gym_aquacollect").removeHandler(h)
    >>> seen
    ["column 'x' dropped"]
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

__all__ = ["logger", "use_stdlib_logging", "LOGGER_NAME"]

LOGGER_NAME = "gym_aquacollect"


class _BraceAdapter(logging.LoggerAdapter):
    """``logger.warning("a {} b", x)``: formats with ``str.format`` (only when the level is enabled)."""

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            text = str(msg).format(*args) if args else str(msg)
            self.logger.log(level, text, stacklevel=kwargs.pop("stacklevel", 1) + 2, **kwargs)

    def debug(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.log(logging.DEBUG, msg, *args, **kwargs)

    def info(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.log(logging.INFO, msg, *args, **kwargs)

    def warning(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.log(logging.WARNING, msg, *args, **kwargs)

    def error(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.log(logging.ERROR, msg, *args, **kwargs)


class _ToLoguru(logging.Handler):
    """Forwards records to loguru (the default presentation: CLI, progress bars, users' loguru sinks)."""

    def emit(self, record: logging.LogRecord) -> None:
        from loguru import logger as loguru_logger

        parts = Path(record.pathname).with_suffix("").parts
        origin = ".".join(parts[len(parts) - 1 - parts[::-1].index("gym_aquacollect"):]) \
            if "gym_aquacollect" in parts else record.module

        def where(r: dict) -> None:  # show the library module and line that logged, not this handler
            r.update(name=origin, function=record.funcName, line=record.lineno)

        try:
            loguru_logger.patch(where).opt(exception=record.exc_info).log(record.levelname, record.getMessage())
        except Exception:  # noqa: BLE001 - logging must never break recording
            self.handleError(record)


_std = logging.getLogger(LOGGER_NAME)
_bridge = _ToLoguru()
if not any(isinstance(h, _ToLoguru) for h in _std.handlers):
    _std.addHandler(_bridge)
    _std.propagate = False
    if _std.level == logging.NOTSET:
        _std.setLevel(logging.DEBUG)  # loguru's default sink shows everything; filter with setLevel

#: the library's logger (``str.format`` placeholders)
logger = _BraceAdapter(_std, {})


def use_stdlib_logging() -> None:
    """Stop forwarding to loguru: records propagate to the standard library's handlers (and the level is
    left to the root logger's unless set on ``"gym_aquacollect"``)."""
    for h in list(_std.handlers):
        if isinstance(h, _ToLoguru):
            _std.removeHandler(h)
    _std.propagate = True
    _std.setLevel(logging.NOTSET)
