from mmlk.models.weights.keys import register_family

from .base import RepBackbone
from .replknet import RepLKNet
from .repnext import RepNeXt
from .unireplknet import UniRepLKNet
from . import repnext_timm  # noqa: F401,E402  (timm names repnext_*, when timm imports)
from . import replknet_timm  # noqa: F401,E402  (timm names replknet_*, when timm imports)
from . import unireplknet_timm  # noqa: F401,E402  (timm names unireplknet_*, when timm imports)

#: Every backbone family mmlk knows; the checkpoint code asks each of them about a state dict's keys.
FAMILIES = (RepLKNet, RepNeXt, UniRepLKNet)
for _family in FAMILIES:  # the checkpoint file layer reads keys through these codecs, knowing no model
    register_family(_family)

__all__ = ['RepBackbone', 'RepLKNet', 'RepNeXt', 'UniRepLKNet', 'FAMILIES']
