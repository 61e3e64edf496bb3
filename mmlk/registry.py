"""mmlk's registry scope.

Every mmlk class is registered exactly once, in the ``mmlk`` scope, whose registries are children of
mmengine's root registries. Host libraries (mmdet, mmseg, mmpretrain) are children of the same roots,
so from any of their configs ``type='mmlk.RepLKNet'`` resolves through the root to this scope, with
``custom_imports=dict(imports=['mmlk'])`` as the only extra line.

Backbones additionally get a *plain-name alias* in mmengine's root MODELS registry (see
:func:`register_plain_alias`), so ``type='RepLKNet'`` also works from mmseg's and mmdet's scopes,
which fall back to their parent (the root) for names they do not know. mmpretrain has its own
``RepLKNet`` and finds it first, so its class is never shadowed.
"""
from typing import Type

from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import Registry

# mmlk.models.classifiers needs mmpretrain, so `import mmlk` leaves it out; building any mmlk model by name
# imports it (it registers its classes only in processes that already use mmpretrain).
MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmlk',
                  locations=['mmlk.models', 'mmlk.models.classifiers'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    scope='mmlk',
    locations=['mmlk.engine'])
OPTIM_WRAPPERS = Registry(
    'optim_wrapper', parent=MMENGINE_OPTIM_WRAPPERS, scope='mmlk', locations=['mmlk.engine'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='mmlk', locations=['mmlk.engine'])


def register_plain_alias(cls: Type) -> Type:
    """Also register ``cls`` under its own name in mmengine's root MODELS registry.

    An alias that another package already registered in the root is left alone (never ``force``):
    users of that package keep their class, and ``mmlk.<Name>`` still reaches ours.
    """
    if cls.__name__ not in MMENGINE_MODELS.module_dict:
        MMENGINE_MODELS.register_module(name=cls.__name__, module=cls)
    return cls
