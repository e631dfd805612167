from __future__ import annotations

from campaign_pipeline.core.errors import exception_chain


def _raised(make):
    try:
        make()
    except Exception as error:  # noqa: BLE001 (the test inspects whatever was raised)
        return error
    raise AssertionError("nothing was raised")


def test_the_chain_follows_causes_then_contexts_outermost_first():
    def cause():
        raise KeyError("root")

    def wrapped():
        try:
            cause()
        except KeyError as error:
            raise ValueError("explicit") from error

    def during():
        try:
            wrapped()
        except ValueError:
            raise RuntimeError("while handling")  # noqa: B904 (the implicit context is what is tested)

    chain = list(exception_chain(_raised(during)))
    assert [type(e) for e in chain] == [RuntimeError, ValueError, KeyError]


def test_a_chain_that_loops_is_walked_once_and_none_is_empty():
    first, second = ValueError("a"), ValueError("b")
    first.__cause__, second.__cause__ = second, first
    assert list(exception_chain(first)) == [first, second]
    assert list(exception_chain(None)) == []
