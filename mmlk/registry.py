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

#: The host scopes a ``_scope_='mmlk'`` build falls back to (the latest current default scope among them).
HOST_SCOPES = ('mmpretrain', 'mmseg', 'mmdet')


def current_host_scope():
    """The newest mmengine default scope that is a host library's (``None`` if there is none).

    mmengine's ``DefaultScope`` keeps every instance (the runner's, ``init_model``'s, and the temporary ones
    of ``overwrite_default_scope``) in creation order; the temporary ``'mmlk'`` one of a ``_scope_='mmlk'``
    build is skipped.
    """
    from mmengine.registry import DefaultScope
    for inst in reversed(list(DefaultScope._instance_dict.values())):
        if inst.scope_name in HOST_SCOPES:
            return inst.scope_name
    return None


class HostFallbackRegistry(Registry):
    """An mmlk registry that resolves names it does not know in the current host library's registry.

    A user config whose base is ``mmlk::<config>`` gets every outer dict of that base tagged
    ``_scope_='mmlk'`` by mmengine (it cannot know that mmlk's configs describe host models), so the model
    (``ImageClassifier``, ``EncoderDecoder``, ``MaskRCNN``) and everything it builds inside would be looked up
    here. A plain name that is not mmlk's is looked up in the registry of the host whose scope is current
    (the config's ``default_scope``, set by the runner / ``init_model``); ``mmlk.<Name>`` and scoped names
    resolve as before.
    """

    def get(self, key):
        if not isinstance(key, str) or '.' in key:
            return super().get(key)
        self.import_from_location()
        if key in self._module_dict:  # mmlk's own
            return self._module_dict[key]
        host = self._host_registry()
        # the host's class before mmengine's root: mmseg's LoadAnnotations, not mmcv's
        obj = host.get(key) if host is not None else None
        return obj if obj is not None else super().get(key)

    def _host_registry(self):
        host = current_host_scope()
        if host is None:
            return None
        try:
            import importlib
            importlib.import_module(f'{host}.registry')  # the host registry exists before searching it
        except ImportError:
            return None
        child = self._get_root_registry()._search_child(host)
        return None if child is None or child is self else child


# mmlk.models.classifiers needs mmpretrain, so `import mmlk` leaves it out; building any mmlk model by name
# imports it (it registers its classes only in processes that already use mmpretrain).
MODELS = HostFallbackRegistry('model', parent=MMENGINE_MODELS, scope='mmlk',
                  locations=['mmlk.models', 'mmlk.models.classifiers'])
OPTIM_WRAPPER_CONSTRUCTORS = HostFallbackRegistry(
    'optimizer wrapper constructor',
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    scope='mmlk',
    locations=['mmlk.engine'])
OPTIM_WRAPPERS = HostFallbackRegistry(
    'optim_wrapper', parent=MMENGINE_OPTIM_WRAPPERS, scope='mmlk', locations=['mmlk.engine'])
HOOKS = HostFallbackRegistry('hook', parent=MMENGINE_HOOKS, scope='mmlk', locations=['mmlk.engine'])


def register_plain_alias(cls: Type) -> Type:
    """Also register ``cls`` under its own name in mmengine's root MODELS registry.

    An alias that another package already registered in the root is left alone (never ``force``):
    users of that package keep their class, and ``mmlk.<Name>`` still reaches ours.
    """
    if cls.__name__ not in MMENGINE_MODELS.module_dict:
        MMENGINE_MODELS.register_module(name=cls.__name__, module=cls)
    return cls


def _fallback_children() -> dict:
    """An ``mmlk`` child (resolving through the host, see :class:`HostFallbackRegistry`) of every mmengine root
    registry mmlk does not otherwise populate (datasets, transforms, visualizers, metrics, loops, ...).

    Without them a ``_scope_='mmlk'`` dict (an outer dict of an ``mmlk::`` base) would be built from mmengine's
    root registry, which knows no host class (``KeyError: 'SegLocalVisualizer is not in the
    mmengine::visualizer registry'``).
    """
    import mmengine.registry as mmengine_registry
    made = {}
    for attr in dir(mmengine_registry):
        root = getattr(mmengine_registry, attr)
        if not isinstance(root, Registry) or root.parent is not None or 'mmlk' in root.children:
            continue
        # (locations: without any, mmengine would call mmlk.utils.register_all_modules, which mmlk has not)
        made[attr] = HostFallbackRegistry(root.name, parent=root, scope='mmlk', locations=['mmlk.registry'])
    return made


HOST_FALLBACKS = _fallback_children()
