from .base import RepBackbone
from .replknet import RepLKNet
from .repnext import RepNeXt

#: Every backbone family mmlk knows; the checkpoint code asks each of them about a state dict's keys.
FAMILIES = (RepLKNet, RepNeXt)

__all__ = ['RepBackbone', 'RepLKNet', 'RepNeXt', 'FAMILIES']
