"""The one exception type of :mod:`mmlk.checkpoint`."""


class CheckpointError(RuntimeError):
    """A pretrained file could not be found, fetched, verified, read or matched to a model.

    The message always says what to do next (which file to fetch by hand, which variant to build, ...).
    """
