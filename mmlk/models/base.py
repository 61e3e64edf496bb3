"""What every mmlk backbone shares: :class:`RepBackbone`.

A family package (``mmlk/models/<family>/``: ``model.py``, ``keys.py``, ``timm.py``) builds its layers and
describes its own checkpoints;
everything a host library or the checkpoint code relies on is implemented once here:

* argument checks with one exception type (``ValueError``) for ``out_indices``, ``frozen_stages`` and
  ``drop_path_rate``;
* ``frozen_stages`` / ``norm_eval`` (re-applied by ``train()``), as in mmpretrain's ``BaseBackbone``;
* ``with_cp``: non-reentrant gradient checkpointing whose recomputation leaves BatchNorm running
  statistics alone (:func:`checkpoint_with_bn_guard`);
* ``init_cfg=dict(type='Pretrained', ...)`` through :func:`mmlk.models.weights.load_pretrained`;
* a strict ``load_state_dict`` whose error names both sides' variant and form
  (:mod:`mmlk.models.weights.keys`);
* ``switch_to_deploy(**options)`` with the family's options, and ``build_kwargs``: the constructor
  arguments of the model *as it is now* (a deploy switch updates them), from which the checkpoint loader
  builds a twin;
* ``get_layer_depth`` (mmpretrain's layer-decay protocol) from the family's ``layer_ids``.
"""
import copy
import functools
import inspect
import re
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, ClassVar, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from mmlk.checkpoint.errors import CheckpointError
from mmlk.models.weights.keys import FORM_TEXT, _family_of, check_state_dict_fits, is_classifier_key


__all__ = ['RepBackbone', 'blocks_per_stage', 'record_build_kwargs', 'checkpoint_with_bn_guard', 'stage_depths']


@contextmanager
def _batchnorm_stats_scratch(module: nn.Module) -> Iterator[None]:
    """Let BN running-statistics updates go to throw-away copies while the context is active.

    Used for the recomputation pass of gradient checkpointing: without it every checkpointed BN would
    update its running mean/var twice per step. The buffers are swapped rather than restored by
    ``copy_`` so the recomputed graph saves the same tensors, untouched afterwards.
    """
    names = ('running_mean', 'running_var', 'num_batches_tracked')
    bns = [m for m in module.modules() if isinstance(m, _BatchNorm) and m.training and m.track_running_stats]
    originals = [tuple(getattr(m, n) for n in names) for m in bns]
    for m, bufs in zip(bns, originals):
        for n, buf in zip(names, bufs):
            if buf is not None:
                setattr(m, n, buf.clone())
    try:
        yield
    finally:
        for m, bufs in zip(bns, originals):
            for n, buf in zip(names, bufs):
                setattr(m, n, buf)


def checkpoint_with_bn_guard(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                             module: nn.Module) -> torch.Tensor:
    """``fn(x)`` under non-reentrant gradient checkpointing; ``module``'s BNs update their statistics once.

    Non-reentrant checkpointing also works when ``x`` needs no gradient (e.g. after a frozen stem).
    """
    return cp.checkpoint(fn, x, use_reentrant=False,
                         context_fn=lambda: (nullcontext(), _batchnorm_stats_scratch(module)))


def normalize_out_indices(out_indices: Union[int, Sequence[int]], num_stages: int,
                          has_classifier: bool = False) -> Tuple[int, ...]:
    """Stage indices in ``[0, num_stages)``, sorted (the order ``forward`` returns maps in).

    Raises:
        ValueError: for an index out of range or not an int, an index given twice (also as ``0`` and
            ``-num_stages``), or an empty selection on a backbone without classifier.
    """
    if isinstance(out_indices, int) and not isinstance(out_indices, bool):
        out_indices = (out_indices, )
    out_indices = tuple(out_indices)
    normalized = []
    for i in out_indices:
        if isinstance(i, bool) or not isinstance(i, int) or not -num_stages <= i < num_stages:
            raise ValueError(f'out_indices must be stage indices in [0, {num_stages - 1}] '
                             f'(or -{num_stages}..-1), got {out_indices}')
        normalized.append(i % num_stages)
    if len(set(normalized)) != len(normalized):
        raise ValueError(f'out_indices has duplicates: {out_indices} (negative indices count from the end)')
    if not normalized and not has_classifier:
        raise ValueError('out_indices is empty and there is no classifier (num_classes=0): '
                         'the backbone would return nothing')
    return tuple(sorted(normalized))


def blocks_per_stage(keys: Sequence[str]) -> Dict[int, int]:
    """``{stage index: number of entries in stages.i.blocks}`` read from parameter / state-dict names (0 for a
    stage whose names hold no block)."""
    depths: Dict[int, int] = {}
    for name in keys:
        m = re.match(r'^stages\.(\d+)\.(.*)$', name)
        if m is None:
            continue
        stage = int(m.group(1))
        depths.setdefault(stage, 0)
        block = re.match(r'^blocks\.(\d+)\.', m.group(2))
        if block is not None:
            depths[stage] = max(depths[stage], int(block.group(1)) + 1)
    return depths


def stage_depths(names: Sequence[str], arch: str, num_stages: int = 4) -> Dict[int, int]:
    """:func:`blocks_per_stage` of parameter names, for layer ids.

    Raises:
        ValueError: unless the names hold exactly ``stages.0`` .. ``stages.{num_stages - 1}``.
    """
    depths = blocks_per_stage(names)
    if sorted(depths) != list(range(num_stages)):
        raise ValueError(f'layer-wise lr decay for {arch} expects {num_stages} stages (stages.0 .. '
                         f'stages.{num_stages - 1} in the parameter names), found stages {sorted(depths)}')
    return depths


def record_build_kwargs(init: Callable) -> Callable:
    """Wrap a constructor so the outermost call records ``build_kwargs`` from the real call.

    Every :class:`RepBackbone` subclass gets it (``__init_subclass__``); other modules the loader rebuilds as
    twins (RepNeXt's classifier head) use it as a decorator.

    ``build_kwargs`` = the arguments of the outermost constructor as called (``**kwargs`` flattened), its
    defaults, and the defaults of the inner constructors it reached through ``**kwargs`` (a parameter an inner
    constructor got from the outer one is the outer one's business, e.g. ``in_chans`` -> ``in_channels``).
    ``type(m)(**m.build_kwargs)`` therefore rebuilds ``m`` with nothing forgotten: no hand-kept copy of the
    signature to drift from it.
    """
    sig = inspect.signature(init)
    params = list(sig.parameters.values())[1:]  # without self

    @functools.wraps(init)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        bound = sig.bind(self, *args, **kwargs)
        given: Dict[str, Any] = {}
        for p in params:
            if p.name not in bound.arguments:
                continue
            if p.kind is p.VAR_KEYWORD:
                given.update(bound.arguments[p.name])
            elif p.kind is p.VAR_POSITIONAL:
                raise TypeError(f'{type(self).__name__} takes no extra positional arguments')
            else:
                given[p.name] = bound.arguments[p.name]
        defaults = {p.name: p.default for p in params
                    if p.name not in bound.arguments and p.default is not p.empty}
        depth = self.__dict__.get('_constructor_depth', 0)  # how many recording constructors are running
        self.__dict__['_constructor_depth'] = depth + 1
        try:
            init(self, *args, **kwargs)
        finally:
            self.__dict__['_constructor_depth'] = depth
        if depth == 0:  # the outermost constructor: innermost defaults first, the outer call wins
            del self.__dict__['_constructor_depth']
            recorded: Dict[str, Any] = {}
            for inner_defaults in self.__dict__.pop('_inner_defaults', []):  # (they return innermost first)
                recorded.update(inner_defaults)
            recorded.update(defaults)
            recorded.update(given)
            self.build_kwargs = copy.deepcopy(recorded)
        else:
            self.__dict__.setdefault('_inner_defaults', []).append(defaults)
    return __init__


class RepBackbone(BaseModule):
    """Base of mmlk's re-parameterisable backbones (see the module docstring for what it provides).

    A family sets the class attributes and ``arch`` / ``arch_name`` (the arch dict and its key in
    ``arch_settings``, or None), and implements :meth:`_frozen_modules`, :meth:`_switch_to_deploy`,
    :meth:`owns_keys`, :meth:`form_of`, :meth:`describe_shapes`, :meth:`state_dict_hints` and
    :meth:`layer_ids`.

    Attributes:
        family: Name used by the checkpoint code (``'replknet'``, ``'repnext'``).
        display_name: Name in messages (``'RepLKNet'``).
        arch_settings: The published variants; the only variant table of the family (the checkpoint
            code names files with it too).
        num_stages: Number of stages (feature maps at strides 4 .. 32).
        deploy_options: Keyword options :meth:`switch_to_deploy` accepts besides none.
        output_norm_pattern: Regex of the per-stage output norms that exist only in downstream models.
    """

    # TorchScript compiles every property: mmengine's ``is_init`` setter assigns values it cannot type and
    # ``form`` reads ``build_kwargs`` (mixed types); both are bookkeeping, never used by forward.
    __jit_unused_properties__ = ['is_init', 'form']

    family: ClassVar[str] = ''
    display_name: ClassVar[str] = ''
    arch_settings: ClassVar[Dict[str, dict]] = {}
    num_stages: ClassVar[int] = 4
    deploy_options: ClassVar[Tuple[str, ...]] = ()
    # Regex of the per-stage output norms only downstream models have (a classifier file lacks them).
    output_norm_pattern: ClassVar[str] = r'(^|\.)stages\.\d+\.norm\.'

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if '__init__' in cls.__dict__:  # every family and subclass constructor records its real call
            cls.__init__ = record_build_kwargs(cls.__dict__['__init__'])  # type: ignore[method-assign]

    def __init__(self, init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self._with_cp = False
        self.build_kwargs: Dict[str, Any] = {}  # filled from the real call once the outermost __init__ returns

    # ------------------------------------------------------------------ construction helpers
    def _setup_common(self, out_indices: Union[int, Sequence[int]], frozen_stages: int, norm_eval: bool,
                      drop_path_rate: float, has_classifier: bool = False) -> None:
        """Check / store the arguments every family has (``build_kwargs`` records itself, see
        :func:`record_build_kwargs`)."""
        self.out_indices = normalize_out_indices(out_indices, self.num_stages, has_classifier)
        if isinstance(frozen_stages, bool) or not isinstance(frozen_stages, int) \
                or not -1 <= frozen_stages <= self.num_stages:
            raise ValueError(f'frozen_stages must be in [-1, {self.num_stages}], got {frozen_stages!r}')
        if not isinstance(drop_path_rate, (int, float)) or not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f'drop_path_rate must be in [0, 1), got {drop_path_rate!r}')
        self.frozen_stages = frozen_stages
        self.norm_eval = bool(norm_eval)

    @staticmethod
    def drop_path_rates(rate: float, total: int) -> List[float]:
        """Stochastic-depth rate of each of ``total`` blocks, linear from 0 to ``rate``.

        Plain Python (not ``torch.linspace``) so the model can be built on the meta device.
        """
        return [rate * i / (total - 1) if total > 1 else 0.0 for i in range(total)]

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """The stem (stride 4), before the first stage."""
        return self.stem(x)

    # ------------------------------------------------------------------ training behaviour
    @property
    def with_cp(self) -> bool:
        return self._with_cp

    @with_cp.setter
    def with_cp(self, value: bool) -> None:
        # Kept on every checkpointing unit too, so setting it after construction takes effect everywhere.
        self._with_cp = bool(value)
        for m in self.modules():
            if m is not self and isinstance(getattr(m, 'with_cp', None), bool):
                m.with_cp = self._with_cp

    def _frozen_modules(self) -> List[nn.Module]:
        """The modules ``frozen_stages`` freezes (stem, the first stages and what joins them)."""
        raise NotImplementedError

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'RepBackbone':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def init_weights(self) -> None:
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            from mmlk.models.weights import load_pretrained
            load_pretrained(self, cfg['checkpoint'], prefix=cfg.get('prefix'))
            self._is_init = True
            return
        super().init_weights()

    # ------------------------------------------------------------------ checkpoints
    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict``; a strict load that does not fit raises a RuntimeError naming the
        model's and the file's variant/form, what to do, and a few offending keys."""
        if strict:
            message = check_state_dict_fits(self, state_dict, raise_error=False)['message']
            if message:
                raise RuntimeError(message)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @property
    def form(self) -> str:
        """``'train'`` or ``'merged'`` (a family may add finer forms, e.g. RepLKNet's ``'fused'``)."""
        return 'merged' if self.build_kwargs.get('deploy') else 'train'

    def describe_extras(self) -> List[str]:
        """What else :meth:`describe` names besides variant and form (head, kept norms, ...)."""
        return []

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        """Refuse, as part of a parent model, a checkpoint whose backbone part is not this backbone's.

        mmengine (the hosts' ``tools/test.py``, ``load_from``) loads non-strictly and only warns, so a file of
        another family or variant, or one without any ``<prefix>`` key, would silently leave a randomly
        initialised backbone. Raised here (a :class:`~mmlk.checkpoint.errors.CheckpointError` naming both
        sides) when: the keys under ``prefix`` are another family's, any of them has another shape (another
        variant), or none of this backbone's keys is present. A checkpoint that fits the backbone but not a
        head loads as before (fine-tuning). Loading the backbone itself (prefix '') keeps the plain checks.
        """
        if prefix:
            self._check_parent_checkpoint(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def _check_parent_checkpoint(self, state_dict: Dict[str, Any], prefix: str) -> None:
        sub = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        own = {k: v for k, v in self.state_dict().items()}
        fam = _family_of(list(sub)) if sub else None
        fits = sum(1 for k, v in sub.items() if k in own and hasattr(v, 'shape')
                   and tuple(v.shape) == tuple(own[k].shape))
        # a classifier carried by the backbone (norm / head) with another class count is a new head: fine-tuning
        mismatched = [k for k, v in sub.items() if k in own and hasattr(v, 'shape') and not is_classifier_key(k)
                      and tuple(v.shape) != tuple(own[k].shape)]
        other_family = fam is not None and getattr(fam, 'family', None) != self.family
        if not (other_family or mismatched or fits == 0):
            return
        if not sub:
            raise CheckpointError(
                f'the checkpoint has no key under {prefix!r} for {self.describe()}: it is not a checkpoint of this model '
                f'(another model layout, a bare backbone file - load it with init_cfg=dict(type=\'Pretrained\', '
                f'checkpoint=...), or a file of another library). Refusing to evaluate a randomly initialised backbone.')
        report = check_state_dict_fits(self, sub, raise_error=False)
        raise CheckpointError(f'{prefix!r} of the checkpoint is not this model\'s backbone: '
                              + (report['message'] or f'{self.describe()} vs the file') +
                              '\nRefusing to evaluate a randomly initialised backbone (mmengine loads non-strictly '
                              'and would only warn).')

    def describe(self) -> str:
        """One line naming the model: variant, form and extras (used in error messages)."""
        name = (f'{self.display_name}-{self.arch_name.upper()}' if self.arch_name
                else f'{self.display_name}(custom {self.arch})')
        return f'{name} ({", ".join([FORM_TEXT.get(self.form, self.form)] + self.describe_extras())})'

    @classmethod
    def owns_keys(cls, keys: Sequence[str]) -> bool:
        """Whether (prefix-free) state-dict keys are this family's."""
        raise NotImplementedError

    @classmethod
    def form_of(cls, keys: Sequence[str]) -> Optional[str]:
        """``'train'``, ``'merged'`` (or a finer family form) of this family's keys; None if undecidable."""
        raise NotImplementedError

    @classmethod
    def describe_shapes(cls, shapes: Dict[str, Tuple[int, ...]]) -> dict:
        """What a (prefix-free) state dict of this family holds, from its keys and shapes.

        Returns at least ``dict(family, form, arch, arch_name, variant, channels, depths, text, extras)``:
        ``arch`` the arch dict (None when the file is partial), ``arch_name`` its key in ``arch_settings``
        and ``variant`` its published name (None for custom numbers), ``text`` a one-line description,
        ``extras`` what else an error message should name (head, kept norms).
        """
        raise NotImplementedError

    def state_dict_hints(self, info: dict) -> List[str]:
        """What to do when a state dict described by ``info`` does not fit this model (form clashes)."""
        return []

    @classmethod
    def kwargs_for_state_dict(cls, info: dict) -> Dict[str, Any]:
        """Constructor arguments of a training-form model that takes the state dict :meth:`describe_shapes`
        described as ``info`` (``arch`` None when the keys name no variant and hold no whole arch)."""
        return dict(arch=info.get('arch_name') or info.get('arch'))

    # ------------------------------------------------------------------ deployment
    def switch_to_deploy(self, **options: Any) -> None:
        """Merge the whole backbone in place for inference (idempotent); eval-mode outputs are unchanged.

        Args:
            **options: The family's :attr:`deploy_options` (None means the constructor's value).
        """
        unknown = sorted(set(options) - set(self.deploy_options))
        if unknown:
            raise ValueError(f'{self.display_name}.switch_to_deploy got unknown options {unknown}; '
                             f'it accepts {list(self.deploy_options) or "none"}')
        resolved = {k: (self.build_kwargs.get(k) if v is None else v) for k, v in options.items()}
        self._switch_to_deploy(**resolved)
        self.build_kwargs['deploy'] = True
        # New parameters start with requires_grad=True: re-apply freezing.
        self._freeze_stages()

    def _switch_to_deploy(self, **options: Any) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ layer-wise lr decay
    @classmethod
    def layer_ids(cls, names: List[str], decay_type: str = 'layer_wise') -> Tuple[Dict[str, int], int]:
        """Layer id of every backbone parameter name and the number of layers ``L`` (BEiT-style decay).

        The stem is 0, stages 0 and 1 are 1 and 2, the deep stage 2 is cut into groups numbered from 3 (the
        family says how: :meth:`_stage2_groups`, :meth:`_stage2_group`), the last stage is ``L``; names
        outside the stem and the stages get :meth:`_outside_layer_id` (``L + 1`` unless the family places
        them). ``decay_type='stage_wise'``: the stem 0, stage ``s`` and what belongs to it ``s + 1``.
        """
        depths = stage_depths(names, cls.display_name, cls.num_stages)
        stage_wise = decay_type == 'stage_wise'
        groups = 1 if stage_wise else cls._stage2_groups(depths[2])
        num_layers = 4 if stage_wise else 3 + groups
        ids: Dict[str, int] = {}
        for name in names:
            parts = name.split('.')
            if parts[0] == 'stem':
                layer = 0
            elif parts[0] == 'stages':
                stage = int(parts[1])
                block = re.match(r'^blocks\.(\d+)\.', '.'.join(parts[2:]) + '.')
                if stage_wise or stage < 2:
                    layer = stage + 1
                elif stage == 2:
                    layer = 3 + cls._stage2_group(int(block.group(1)) if block else None, depths[2], groups)
                else:
                    layer = num_layers
            else:
                layer = cls._outside_layer_id(parts, stage_wise, groups, num_layers)
            ids[name] = layer
        return ids, num_layers

    @classmethod
    def _stage2_groups(cls, depth: int) -> int:
        """How many layer ids stage 2 (``depth`` entries in its ``blocks``) spans."""
        raise NotImplementedError

    @classmethod
    def _stage2_group(cls, block: Optional[int], depth: int, groups: int) -> int:
        """The group (0-based) of stage 2's ``blocks[block]``, or of its other parameters (``block`` None)."""
        raise NotImplementedError

    @classmethod
    def _outside_layer_id(cls, parts: List[str], stage_wise: bool, groups: int, num_layers: int) -> int:
        """Layer id of a name outside stem and stages (the classifier's norm: no decay)."""
        return num_layers + 1

    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        """mmpretrain's layer-decay protocol: ``(layer id, number of ids)`` of a parameter.

        mmpretrain asks once per parameter: the table of every name is computed on the first call and kept until
        a name it lacks is asked for (a deploy switch renames parameters), not rebuilt per call.

        Args:
            param_name: Full parameter name, e.g. ``'backbone.stages.2.blocks.3.pw1.conv.weight'``.
            prefix: The backbone's prefix in ``param_name`` (``'backbone.'`` in a classifier).
        """
        name = param_name[len(prefix):] if param_name.startswith(prefix) else None
        table = self.__dict__.get('_layer_id_table')
        if table is None or (name is not None and name not in table[0]):
            table = self.layer_ids([n for n, _ in self.named_parameters()])
            self.__dict__['_layer_id_table'] = table
        ids, num_layers = table
        return ids.get(name, num_layers + 1), num_layers + 2
