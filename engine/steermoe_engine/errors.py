"""The one exception type whose message is meant for the user as it stands."""


class EngineError(Exception):
    """A problem with the request or its inputs (bad model folder, dense model, ...).

    Anything else raised in the engine is a bug and travels with its traceback.
    """


def first_line(err: BaseException) -> str:
    """An exception in one line for an EngineError's message: its first line, or its type."""
    return str(err).splitlines()[0] if str(err).strip() else type(err).__name__
