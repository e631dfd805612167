"""Walking an exception's chain: the error, what caused it, what it happened during, and so on."""

from __future__ import annotations

from collections.abc import Iterator


def exception_chain(error: BaseException | None) -> Iterator[BaseException]:
    """The error and every error behind it (``__cause__``, else ``__context__``), each once, outermost first.

    Frameworks wrap the error that matters (Dagster's component tree, SQLAlchemy's ``OperationalError``), so
    callers recognise one by looking along the whole chain; a chain that loops is walked once.
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__
