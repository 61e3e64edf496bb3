from .replknet import RepLKNet  # noqa: F401
from .repnext import RepNeXt  # noqa: F401
