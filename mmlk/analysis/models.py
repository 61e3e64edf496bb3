"""Building models for the analysis tools from a config file, a ``type=`` dict or a timm name.

The analysis tools (ERF, FLOPs, throughput, export, feature maps) accept the same model
specifications:

* a config file of mmpretrain, mmsegmentation or mmdetection (``default_scope`` decides the host);
* a ``type=`` dict written as Python, e.g. ``"dict(type='mmlk.RepLKNet', arch='31B')"`` or
  ``"dict(type='mmpretrain.ResNet', depth=50)"`` (any registered backbone, scoped names allowed);
* a timm model name, e.g. ``timm:resnet50`` or ``replknet_31b`` (``timm:`` may be left out for names
  timm knows).

Configs are prepared like ``tools/train.py`` / ``tools/test.py`` do (SyncBN -> BN without CUDA, the
host library's registries imported), so every shipped config works on a CPU machine.
"""
import ast
import logging
import os.path as osp
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

SPEC_HELP = ('a config file (mmpretrain / mmseg / mmdet), a type dict such as '
             '"dict(type=\'mmlk.RepLKNet\', arch=\'31B\')", or a timm model name (e.g. timm:resnet50)')


@dataclass
class BuiltModel:
    """A model built from a spec, with what the tools need to know about it.

    Attributes:
        model: The whole model (a detector, segmentor, classifier, a bare backbone or a timm model).
        kind: ``'config'``, ``'dict'`` or ``'timm'``.
        scope: Host library of a config (``'mmseg'``, ``'mmdet'``, ``'mmpretrain'``) or ``''``.
        cfg: The prepared mmengine ``Config`` for configs, else None.
        mean: Per-channel mean of the model's input normalisation (0-255 scale).
        std: Per-channel std of the model's input normalisation (0-255 scale).
        input_size: (H, W) the config trains/tests on, when it says so.
    """

    model: nn.Module
    kind: str
    scope: str = ''
    cfg: Any = None
    mean: Sequence[float] = (123.675, 116.28, 103.53)
    std: Sequence[float] = (58.395, 57.12, 57.375)
    input_size: Optional[Tuple[int, int]] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def backbone(self) -> nn.Module:
        """The feature extractor: ``model.backbone`` for mm models, the model itself otherwise."""
        # (a host backbone may carry a `backbone` attribute of its own that is not a module, e.g. None)
        inner = getattr(self.model, 'backbone', None)
        return inner if isinstance(inner, nn.Module) else self.model


def _quiet_mmengine() -> None:
    """Keep mmengine's per-parameter init reports out of the console (they go to log files in runs)."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    logger.setLevel(logging.WARNING)


def _literal(node: ast.AST) -> Any:
    """``ast.literal_eval`` that also accepts ``dict(key=value, ...)`` calls, nested anywhere."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == 'dict':
        if node.args or any(kw.arg is None for kw in node.keywords):
            raise ValueError('dict(...) takes keyword arguments only')
        return {kw.arg: _literal(kw.value) for kw in node.keywords}
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(v) for v in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    return ast.literal_eval(node)


def parse_type_dict(text: str) -> Dict[str, Any]:
    """Parse ``"dict(type='X', a=1)"`` or ``"{'type': 'X', 'a': 1}"`` without evaluating code.

    Raises:
        ValueError: if the text is not a dict of literals with a ``type`` key.
    """
    try:
        value = _literal(ast.parse(text.strip(), mode='eval').body)
    except (SyntaxError, ValueError) as exc:
        raise ValueError(f'cannot read {text!r} as a model dict ({exc}); write it as '
                         '"dict(type=\'mmlk.RepLKNet\', arch=\'31B\')" with literal values only') from None
    if not isinstance(value, dict) or 'type' not in value:
        raise ValueError(f'{text!r} is not a dict with a "type" key, e.g. "dict(type=\'mmlk.RepNeXt\', arch=\'m3\')"')
    return value


def _config_norm(cfg) -> Tuple[Sequence[float], Sequence[float]]:
    pre = cfg.get('model', {}).get('data_preprocessor', None) or cfg.get('data_preprocessor', None) or {}
    mean = pre.get('mean', None) or (123.675, 116.28, 103.53)
    std = pre.get('std', None) or (58.395, 57.12, 57.375)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _config_input_size(cfg) -> Optional[Tuple[int, int]]:
    """The (H, W) a config works at: its ``crop_size`` or its data preprocessor's fixed ``size``."""
    for holder in (cfg, cfg.get('model', {}).get('data_preprocessor', None) or {}):
        for key in ('crop_size', 'size'):
            size = holder.get(key, None)
            if isinstance(size, (list, tuple)) and len(size) == 2:
                return int(size[0]), int(size[1])
    return None


def load_weights(model: nn.Module, checkpoint: str, strip_prefixes: Sequence[str] = ()) -> None:
    """Load ``checkpoint`` into ``model`` and fail loudly when the keys do not fit.

    Runner checkpoints (``state_dict`` + training state) are accepted; mmlk allows exactly mmengine's
    training-state classes through ``weights_only`` unpickling, never arbitrary code.
    """
    from mmengine.runner.checkpoint import _load_checkpoint

    from mmlk.checkpoint.mmengine_compat import allow_mmengine_checkpoint_globals
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {checkpoint}')
    allow_mmengine_checkpoint_globals()
    ckpt = _load_checkpoint(checkpoint, map_location='cpu')
    from mmlk.checkpoint.containers import unwrap_state_dict
    state, _, _ = unwrap_state_dict(ckpt)  # the one rule for where a file keeps its weights
    cleaned = {}
    for k, v in state.items():
        for prefix in ('module.', ) + tuple(strip_prefixes):
            if k.startswith(prefix):
                k = k[len(prefix):]
        cleaned[k] = v
    # the one misfit message of mmlk (mmlk.models.weights.keys), for any model
    from mmlk.models.weights.keys import compare_state_dict, misfit_message, model_text
    missing, unexpected, mismatched = compare_state_dict(model.state_dict(), cleaned)
    if missing or unexpected or mismatched:
        raise RuntimeError(misfit_message(
            checkpoint, model_text(model), missing, unexpected, [(k, a, k, b) for k, a, b in mismatched],
            hints=['Pass the checkpoint that belongs to this config, or convert upstream files with '
                   'tools/model_converters/ first.']))
    model.load_state_dict(cleaned, strict=True)


def build_from_spec(spec: str, checkpoint: Optional[str] = None, backbone_only: bool = False,
                    cfg_options: Optional[Dict] = None) -> BuiltModel:
    """Build a model in eval mode from a config path, a type-dict string or a timm name.

    Args:
        spec: See the module docstring.
        checkpoint: Optional weights (the whole model's for configs; the backbone's for type dicts,
            ``backbone.`` prefixes are stripped; the timm model's for timm names).
        backbone_only: For configs, build only ``cfg.model.backbone`` (faster, and what the ERF needs);
            the checkpoint's ``backbone.`` keys are then loaded.
        cfg_options: ``--cfg-options`` merged into a config.
    """
    import mmlk  # noqa: F401  (registers mmlk's classes and timm names)
    _quiet_mmengine()
    text = spec.strip()
    if text.endswith('.py'):
        return _build_config(text, checkpoint, backbone_only, cfg_options)
    if text.startswith(('dict(', '{')):
        cfg = parse_type_dict(text)
        return _build_dict(cfg, checkpoint)
    name = text[len('timm:'):] if text.startswith('timm:') else text
    try:
        import timm
    except ImportError:  # pragma: no cover - timm is a runtime requirement
        raise ValueError(f'{spec!r}: not a config file or a dict, and timm is not installed') from None
    if not timm.is_model(name):
        raise ValueError(f'{spec!r} is neither an existing config file (.py), a type dict nor a timm model name. '
                         f'Expected {SPEC_HELP}.')
    model = timm.create_model(name, pretrained=False)
    if checkpoint:
        load_weights(model, checkpoint)
    cfg = getattr(model, 'pretrained_cfg', {}) or {}
    mean = tuple(255. * v for v in cfg.get('mean', (0.485, 0.456, 0.406)))
    std = tuple(255. * v for v in cfg.get('std', (0.229, 0.224, 0.225)))
    size = tuple(cfg.get('input_size', (3, 224, 224))[1:])
    return BuiltModel(eval_mode(model), 'timm', mean=mean, std=std, input_size=size)


def _build_config(path: str, checkpoint: Optional[str], backbone_only: bool,
                  cfg_options: Optional[Dict]) -> BuiltModel:
    from mmengine.registry import MODELS

    from mmlk.engine.host_config import adapt_to_cpu, host_scope, init_host_scope, load_config
    cfg = load_config(path, cfg_options)
    init_host_scope(cfg)
    adapt_to_cpu(cfg)
    model_cfg = cfg.model.backbone if backbone_only else cfg.model
    model_cfg = model_cfg.copy()
    # The tools analyse the given weights (or the random init); never fetch pretrained backbones.
    if backbone_only:
        model_cfg.pop('init_cfg', None)
    elif isinstance(model_cfg.get('backbone'), dict):
        model_cfg.backbone.pop('init_cfg', None)
    model = MODELS.build(model_cfg)
    if hasattr(model, 'init_weights') and not checkpoint:
        model.init_weights()
    if checkpoint:
        load_weights(model, checkpoint, strip_prefixes=('backbone.', ) if backbone_only else ())
    mean, std = _config_norm(cfg)
    return BuiltModel(eval_mode(model), 'config', scope=host_scope(cfg), cfg=cfg, mean=mean, std=std,
                      input_size=_config_input_size(cfg))


def _build_dict(model_cfg: Dict[str, Any], checkpoint: Optional[str]) -> BuiltModel:
    import importlib

    from mmengine.registry import init_default_scope
    type_name = str(model_cfg['type'])
    # A scoped name ('mmseg.ResNet') is built through that library's registry, which imports its models.
    scope = type_name.split('.')[0] if '.' in type_name else 'mmlk'
    if scope not in ('mmlk', 'mmseg', 'mmdet', 'mmpretrain'):
        raise ValueError(f'type {type_name!r}: use an mmlk name or a scoped host name such as '
                         "'mmpretrain.ResNet', 'mmseg.ResNetV1c' or 'mmdet.ResNet'")
    registry = importlib.import_module(f'{scope}.registry').MODELS
    init_default_scope(scope)
    try:
        model = registry.build(dict(model_cfg))
    except KeyError as exc:
        raise ValueError(f'cannot build {type_name!r}: {exc}. Unscoped names are looked up in mmlk; write '
                         "host classes with their library's prefix, e.g. 'mmpretrain.ResNet'") from None
    if checkpoint:
        load_weights(model, checkpoint, strip_prefixes=('backbone.', ))
    elif hasattr(model, 'init_weights'):
        model.init_weights()
    return BuiltModel(eval_mode(model), 'dict', scope=scope if scope != 'mmlk' else '')


def eval_mode(model: nn.Module) -> nn.Module:
    """``model.eval()``, returning the model: some host backbones (mmpretrain's ResNet) override ``train()``
    without returning ``self``, so ``model.eval()`` cannot be chained."""
    model.eval()
    return model


# --------------------------------------------------------------------------- feature extraction
def last_stage_fn(built: BuiltModel) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function image batch -> the last stage's feature map (N, C, h, w) of the model's backbone.

    mmlk's RepLKNet: the raw last-stage map (before the classifier norm), as upstream's ERF script
    uses; timm models: ``forward_features``; any other backbone: the last 4-D tensor it returns.
    """
    if built.kind == 'timm':
        return built.model.forward_features
    backbone = built.backbone
    if hasattr(backbone, 'forward_trunk'):
        return lambda x: backbone.forward_trunk(x)[1]

    def fn(x: torch.Tensor) -> torch.Tensor:
        outs = backbone(x)
        if torch.is_tensor(outs):
            outs = [outs]
        maps = [o for o in outs if torch.is_tensor(o) and o.dim() == 4]
        if not maps:
            raise RuntimeError(f'{type(backbone).__name__} returned no 4-D feature map; set its out_indices '
                               'to include the last stage')
        return maps[-1]
    return fn


def switch_to_deploy(model: nn.Module) -> int:
    """Merge every re-parameterisable part of ``model`` (:func:`mmlk.models.utils.reparameterize`);
    returns how many outermost modules were switched."""
    from mmlk.models.utils import reparameterize
    return len(reparameterize(model))


# --------------------------------------------------------------------------- tensor-in forward
class TensorForward(nn.Module):
    """``forward(x)`` of an mm model in its tensor mode, for tracing, timing and export.

    mmseg / mmpretrain models run ``model._forward(x)`` (the network without post-processing);
    detectors also need per-image meta information, which is made up here for an unpadded ``x``.
    Bare backbones and timm models are called directly.
    """

    def __init__(self, model: nn.Module, scope: str = '') -> None:
        super().__init__()
        self.model = model
        self.scope = scope

    def _det_samples(self, x: torch.Tensor) -> List[Any]:
        from mmdet.structures import DetDataSample
        h, w = x.shape[-2:]
        samples = []
        for _ in range(x.shape[0]):
            s = DetDataSample()
            s.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                                batch_input_shape=(h, w), scale_factor=(1., 1.)))
            samples.append(s)
        return samples

    def forward(self, x: torch.Tensor):
        if not hasattr(self.model, '_forward'):
            return self.model(x)
        if self.scope == 'mmdet':
            return self.model._forward(x, self._det_samples(x))
        return self.model._forward(x)


def tensor_model(built: BuiltModel) -> nn.Module:
    """The model of ``built`` as a module taking one image tensor (see :class:`TensorForward`)."""
    return TensorForward(built.model, built.scope)


def default_input_size(built: BuiltModel, fallback: Tuple[int, int] = (224, 224)) -> Tuple[int, int]:
    return tuple(built.input_size) if built.input_size else fallback
