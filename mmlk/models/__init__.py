"""mmlk models: importing this package registers every model class in the ``mmlk`` scope.

One package per family (``replknet``, ``repnext``, ``unireplknet``: ``model.py``, ``keys.py``, ``timm.py``) on
what they share (:mod:`.base`'s :class:`RepBackbone`, :mod:`.timm_adapter`, :mod:`.utils`); :mod:`.weights`
loads checkpoints into any of them through the codecs registered below. Adding a family is one package and
its entry in ``FAMILIES`` (docs/architecture.md, "How to add a family").
"""
from .base import RepBackbone
from .replknet import RepLKNet
from .repnext import RepNeXt, RepNeXtClsHead
from .unireplknet import UniRepLKNet
from .weights.keys import register_family

#: Every backbone family mmlk knows; the weights layer asks each of them about a state dict's keys.
FAMILIES = (RepLKNet, RepNeXt, UniRepLKNet)
for _family in FAMILIES:  # the loader reads keys through these codecs, knowing no model
    register_family(_family)

__all__ = ['RepBackbone', 'RepLKNet', 'RepNeXt', 'RepNeXtClsHead', 'UniRepLKNet', 'FAMILIES']
