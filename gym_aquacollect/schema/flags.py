"""Episode end flags: the bits of the ``flags`` column and of episode ends (defined here only).

Example:
    >>> (TERM | TRUNC) & TERM, TRUNC
    (1, 2)
"""

TERM, TRUNC = 1, 2  #: ``terminated`` and ``truncated`` bits

__all__ = ["TERM", "TRUNC"]
