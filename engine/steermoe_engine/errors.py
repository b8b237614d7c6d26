"""The one exception type whose message is meant for the user as it stands."""


class EngineError(Exception):
    """A problem with the request or its inputs (bad model folder, dense model, ...).

    Anything else raised in the engine is a bug and travels with its traceback.
    """
