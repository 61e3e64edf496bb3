"""mmlk models: importing this package registers every model class in the ``mmlk`` scope."""
from . import backbones, heads  # noqa: F401
