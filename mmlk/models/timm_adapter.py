"""timm's model contract, once for every family: :class:`TimmAdapter` and :func:`build_timm_model`.

Each family's ``timm.py`` subclasses ``TimmAdapter`` and its backbone, and registers one factory per variant
(:func:`register_timm_factory`) that calls :func:`build_timm_model`. timm itself is imported only by the
functions that need it, so ``import mmlk`` works without timm; ``pretrained=True`` resolves the weights through
mmlk's registry (the ``timm`` field of ``checkpoints.yaml``), never through timm's hub.
"""
import functools
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn

__all__ = ['TimmAdapter', 'build_timm_model', 'register_timm_factory', 'timm_checkpoints']


@functools.lru_cache(maxsize=None)
def timm_checkpoints(family: str) -> Dict[str, str]:
    """``{timm name.tag: checkpoints.yaml name}`` of a family's entries with a ``timm`` field (the one map)."""
    from mmlk.checkpoint.catalog import list_checkpoints
    return {e['timm']: e['name'] for e in list_checkpoints() if e.get('arch') == family and e.get('timm')}


class TimmAdapter:
    """timm's model contract as every family's timm classifier implements it (``TimmRepLKNet``,
    ``TimmRepNeXt``, ``TimmUniRepLKNet``).

    Mixed into a :class:`~mmlk.models.RepBackbone` subclass that has a ``head``; the family supplies
    :meth:`_timm_stage` (run stage ``i`` on the previous stage's output), :meth:`_timm_stage_feature`,
    :meth:`_timm_final_norm` and :meth:`_timm_block_groups`.
    """

    @staticmethod
    def load_released(model: nn.Module, family: str, name: str) -> None:
        """``pretrained=True``: load the ``checkpoints.yaml`` entry whose ``timm`` field is ``name``
        (``<model name>.<tag>``) into ``model``, strictly; a name without released weights is a ValueError."""
        table = timm_checkpoints(family)
        if name not in table:
            raise ValueError(f'no released weights for {name}; tags with weights: {sorted(table)} '
                             f'(timm.list_pretrained("{name.split(".")[0]}*"))')
        from mmlk.models.weights import load_pretrained
        load_pretrained(model, table[name])

    @staticmethod
    def check_global_pool(name: str, global_pool: str, num_classes: int) -> None:
        """timm's ``global_pool`` choices these classifiers take: ``'avg'`` or ``''`` (unpooled maps, no head).

        Raises:
            ValueError: another pooling, or ``''`` with a Linear head (``num_classes > 0``); says what to pass.
        """
        if global_pool not in ('avg', ''):
            raise ValueError(f"{name} supports global_pool='avg' or '' (no pooling), got {global_pool!r}")
        if global_pool == '' and num_classes > 0:
            raise ValueError("global_pool='' returns unpooled feature maps, which a Linear head cannot take: "
                             'pass num_classes=0 with it (timm.create_model(..., num_classes=0, '
                             "global_pool='') or model.reset_classifier(0, ''))")

    def _init_timm_classifier(self, num_classes: int, global_pool: str, widths: Sequence[int]) -> None:
        """The timm attributes of a classifier whose head is one Linear (``Identity`` for ``num_classes=0``)
        after the stages of ``widths`` channels (strides 4 .. 32)."""
        self.num_classes = num_classes
        self.global_pool = global_pool
        if num_classes == 0:
            self.head = nn.Identity()
        self.num_features = self.head_hidden_size = widths[-1]
        self.feature_info = [dict(num_chs=c, reduction=4 * 2**i, module=f'stages.{i}') for i, c in enumerate(widths)]

    @property
    def has_classifier(self) -> bool:
        return True  # the head exists (Identity for num_classes=0); timm's reset_classifier replaces it

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """A new Linear head (none for ``num_classes=0``); ``global_pool`` ``'avg'`` or ``''``."""
        pool = self.global_pool if global_pool is None else global_pool
        self.check_global_pool(self.display_name, pool, num_classes)
        self.num_classes = num_classes
        self.global_pool = pool
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return self.head

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """timm's switch for ``with_cp``: checkpoint every block (BN statistics updated once)."""
        self.with_cp = enable

    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        """Parameter groups for timm's layer-wise lr decay: the stem, then the stages' parts in order."""
        return dict(stem=r'^stem', blocks=self._timm_block_groups(coarse))

    def forward_intermediates(self, x: torch.Tensor, indices: Optional[Union[int, List[int]]] = None,
                              norm: bool = False, stop_early: bool = False, output_fmt: str = 'NCHW',
                              intermediates_only: bool = False):
        """timm's intermediate features: the stage maps named by ``indices`` (``norm`` also applies the
        final norm to the last one where the family has one) and the raw map of the last stage run."""
        from timm.models._features import feature_take_indices  # timm is optional
        if output_fmt != 'NCHW':
            raise ValueError(f'{type(self).__name__} returns NCHW features, got output_fmt={output_fmt!r}')
        take, max_index = feature_take_indices(self.num_stages, indices)
        last = max_index if stop_early else self.num_stages - 1
        x = self.forward_stem(x)
        feats = []
        for i in range(last + 1):
            x = self._timm_stage(i, x)
            if i in take:
                feat = self._timm_stage_feature(i, x)
                feats.append(self._timm_final_norm(feat) if norm and i == self.num_stages - 1 else feat)
        return feats if intermediates_only else (x, feats)

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        from timm.models._features import feature_take_indices
        take, _ = feature_take_indices(self.num_stages, indices)
        if prune_norm and isinstance(getattr(self, 'norm', None), nn.Module):
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0)
        return take

    def _timm_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _timm_stage_feature(self, index: int, x: torch.Tensor) -> torch.Tensor:
        return x

    def _timm_final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _timm_block_groups(self, coarse: bool) -> Any:
        raise NotImplementedError


def build_timm_model(model_cls: type, variant: str, pretrained: bool, *, family: str, arch: str,
                     feature_cls: str = 'getter', default_tag: str = '', **kwargs: Any) -> nn.Module:
    """What every family's timm factory does: build ``model_cls`` through timm, load the released weights
    of the requested tag, wrap it for ``features_only``.

    Args:
        model_cls: The family's timm class (a :class:`TimmAdapter`).
        variant: timm model name (``'replknet_31b'``).
        pretrained: Load the ``checkpoints.yaml`` entry whose ``timm`` field is ``<variant>.<tag>``.
        family: Whose entries to look in (``'replknet'``).
        arch: The ``arch`` argument of ``model_cls``.
        feature_cls: How ``features_only`` wraps the model: ``'getter'`` (timm's ``FeatureGetterNet``, through
            ``forward_intermediates``) or ``'list'`` (``FeatureListNet`` over the flattened stages).
        default_tag: The tag of a bare name (``create_model('repnext_m0')``) where timm reports none.
        **kwargs: timm's ``create_model`` keywords and further ``model_cls`` arguments.

    Raises:
        ValueError: ``features_only`` with another ``feature_cls`` than the family's; ``pretrained`` with a
            tag that has no released weights.
    """
    from timm.models import build_model_with_cfg
    from timm.models._builder import pretrained_cfg_for_features
    from timm.models._features import FeatureGetterNet, FeatureListNet
    features_only = kwargs.pop('features_only', False)
    out_indices = kwargs.pop('out_indices', (0, 1, 2, 3))
    asked = kwargs.pop('feature_cls', feature_cls)
    if features_only and asked != feature_cls:
        raise ValueError(f'{model_cls.display_name} supports feature_cls={feature_cls!r} (its stage maps come '
                         f'from {"forward_intermediates" if feature_cls == "getter" else "its flattened stages"}), '
                         f'got {asked!r}')
    # create_model('name.tag') hands the tag over as a string pretrained_cfg
    asked_tag = kwargs.get('pretrained_cfg')
    model = build_model_with_cfg(model_cls, variant, False, arch=arch, **kwargs)
    if pretrained:
        tag = asked_tag if isinstance(asked_tag, str) else (model.pretrained_cfg.get('tag') or default_tag)
        TimmAdapter.load_released(model, family, f'{variant}.{tag}'.rstrip('.'))
    if features_only:
        cfg = model.pretrained_cfg
        if feature_cls == 'getter':
            model = FeatureGetterNet(model, out_indices=out_indices)
        else:
            model = FeatureListNet(model, out_indices=out_indices, flatten_sequential=True)
        model.pretrained_cfg = model.default_cfg = pretrained_cfg_for_features(cfg)
    return model


def register_timm_factory(namespace: Dict[str, Any], name: str, doc: str,
                          create: Callable[..., nn.Module]) -> None:
    """Register ``create(name, pretrained, **kwargs)`` with timm as the factory ``name``.

    One factory per published variant, made here rather than written out per variant: timm lists a model under
    its factory's name and module, so both (and the docstring) are set before registering, and the factory is
    put into the family module's ``namespace`` as a module-level function would be.
    """
    from timm.models import register_model

    def factory(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        return create(name, pretrained, **kwargs)
    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = doc
    factory.__module__ = namespace['__name__']
    register_model(factory)
    namespace[name] = factory
