"""``load_pretrained``: resolve, read, adapt and strictly load released weights into an mmlk model.

Used by every mmlk backbone's ``init_weights`` for ``init_cfg=dict(type='Pretrained', checkpoint=...)``
and by the converters in ``tools/model_converters``. Compared with upstream loaders (``strict=False`` that
silently ignored missing keys, loading inside ``__init__``):

* ``checkpoint`` may be a ``checkpoints.yaml`` name (cached, downloaded and sha256-verified), a path or
  a URL;
* every released format is recognised (each registered family's official files and TorchScript archives,
  mmpretrain classifiers, mmseg 0.x / mmdet 2.x downstream checkpoints);
* a training-form file loads into a merged (``deploy=True``) model: a training-form twin is built from
  the model's ``build_kwargs``, loaded strictly, merged with ``reparameterize()`` and copied over; a merged
  file in another merged layout a family declares (``merged_layouts``) is loaded the same way;
* key checking is strict. Only these differences are accepted, each reported in the log: a classifier
  the model does not have (dropped), a head whose class count differs (left initialised), the
  non-backbone parts of a downstream file loaded into a backbone (dropped), model parts the file has
  none of at all (e.g. a detector's heads when loading a classification file, left initialised),
  per-stage norms absent from classification files, and BN ``num_batches_tracked`` counters.
  Anything else fails, naming the variant the file holds when shapes reveal it.
"""
import logging
import os
import os.path as osp
import re
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn

from mmlk.checkpoint import containers
from mmlk.checkpoint.errors import CheckpointError
from mmlk.checkpoint.reader import read_checkpoint
from mmlk.checkpoint.resolve import resolve_checkpoint
from . import keys as SD

_MAX_LIST = 8


def _log(msg: str, logger: Any = None, level: int = logging.INFO) -> None:
    try:
        from mmengine.logging import print_log
        print_log(msg, logger=logger if logger is not None else 'current', level=level)
    except ImportError:  # mmengine is a hard dependency, but keep the loader usable without it
        print(msg)


def read_state_dict(path: str, map_location: Any = 'cpu', ema: Optional[bool] = None
                    ) -> Tuple['OrderedDict[str, torch.Tensor]', dict, str]:
    """Read any supported file into ``(state dict in official names, meta, format)``.

    ``ema`` chooses between the model and EMA weights of timm train-script files (see
    ``mmlk.checkpoint.containers.select_timm_train_weights``); ``meta['weights']`` then names the one used.
    Other formats hold one set of weights; asking them for EMA weights is an error.
    """
    obj, kind = read_checkpoint(path, map_location)
    if kind == 'torchscript':
        state, meta = OrderedDict(obj), {}
        fmt = f'{SD.detect_family(state) or "unknown"}-torchscript'  # e.g. a family's fused release
    elif containers.is_timm_train_checkpoint(obj):
        inner, which = containers.select_timm_train_weights(obj, ema)
        state, meta, _ = containers.unwrap_state_dict(inner)
        meta = dict(meta, weights=which, epoch=obj.get('epoch'), arch=obj.get('arch'))
        fmt = containers.TIMM_TRAIN_FORMAT
    else:
        state, meta, container = containers.unwrap_state_dict(obj)
        fmt = SD.detect_format(state, container)
    if ema and fmt != containers.TIMM_TRAIN_FORMAT:
        raise CheckpointError(f'{osp.basename(path)} ({fmt}) holds a single set of weights; EMA weights can only be '
                              'chosen from timm train-script checkpoints (state_dict_ema). Drop ema=True.')
    return SD.canonicalize(state, fmt), meta, fmt


# ------------------------------------------------------------------------------------------ matching
def _top(key: str) -> str:
    return key.split('.', 1)[0]


def _mismatch_message(src: Dict[str, torch.Tensor], tgt: Dict[str, torch.Size], what: str) -> str:
    s, t = SD.describe_arch(src), SD.describe_arch(tgt)
    lines = []
    if s and t and s['text'] != t['text']:
        lines.append(f'The checkpoint holds {s["text"]}, but the model is {t["text"]}.')
        if s['family'] != t['family']:
            lines.append('This file is for a different architecture family.')
        elif s['variant']:
            arch = s['arch_name'] or s['variant']  # the family's own spelling (its arch_settings key)
            lines.append(f'Build the model with arch=\'{arch}\' (and the config paired with the file in '
                         'checkpoints.yaml), or pick the checkpoint of the model\'s variant.')
        else:
            lines.append('Build the model with an arch dict matching these numbers, or pick the checkpoint of '
                         'the model\'s variant.')
    st, tt = SD.task_of(src), SD.task_of(tgt)
    generic = ('classification', 'backbone')  # any backbone fits these; only two downstream tasks can clash
    if st != tt and not st.startswith(generic) and not tt.startswith(generic):
        lines.append(f'The checkpoint is a {st} model, the model a {tt} model.')
    return ' '.join(lines)


def _match(model: nn.Module, source: 'OrderedDict[str, torch.Tensor]', label: str
           ) -> Tuple[Dict[str, torch.Tensor], dict]:
    """Match ``source`` to ``model`` under the strict policy; return (state to load, report)."""
    target = OrderedDict((k, v.shape) for k, v in model.state_dict().items())
    mapping, unmatched, mismatched = SD.match_keys(source, target)
    target_tops = {_top(k) for k in target}
    source_tops = {_top(mapping.get(k, k)) for k in source}
    src_has_backbone_prefix = any(k.startswith('backbone.') for k in source)

    dropped_head, dropped_other, unexpected = [], [], []
    for k in unmatched:
        if SD.is_classifier_key(k):
            dropped_head.append(k)  # the model has no such classifier (a missing one is caught below)
        elif src_has_backbone_prefix and not k.startswith('backbone.') and _top(k) not in target_tops:
            dropped_other.append(k)  # neck / heads of a downstream file loaded into a backbone
        else:
            unexpected.append(k)
    reinit_head, bad_shapes = [], []
    for k, t in mismatched:
        (reinit_head if SD.is_classifier_key(k) or SD.is_classifier_key(t) else bad_shapes).append((k, t))

    filled = set(mapping.values()) | {t for _, t in bad_shapes}  # shape clashes are reported on their own
    reinit_targets = {t for _, t in reinit_head}
    # per-stage output norms exist only in downstream models; each family names its own
    output_norm = '|'.join(f'(?:{fam.output_norm_pattern})' for fam in SD.families())
    src_has_stage_norm = any(re.search(output_norm, k) for k in source)
    fresh, missing = [], []
    for k in target:
        if k in filled:
            continue
        if k.endswith('num_batches_tracked') or k in reinit_targets:
            fresh.append(k)
        elif re.search(output_norm, k) and not src_has_stage_norm:
            fresh.append(k)
        elif (SD.is_downstream_key(k) or SD.is_classifier_key(k)) and _top(k) not in source_tops and mapping:
            fresh.append(k)  # a whole component (detector head, classifier) the file does not have
        elif SD.is_classifier_key(k) and not any(SD.is_classifier_key(s) for s in source):
            fresh.append(k)
        else:
            missing.append(k)

    if unexpected or missing or bad_shapes or not mapping:
        hint = _mismatch_message(source, target, label)
        hints = [hint] if hint else []
        if not mapping:
            hints.append('No key matched at all: is `prefix` right, and is this a checkpoint of this architecture?')
        raise CheckpointError(SD.misfit_message(
            label, SD.model_text(model), missing, unexpected,
            [(s, tuple(source[s].shape), t, tuple(target[t])) for s, t in bad_shapes], hints=hints,
            matched=len(mapping), max_listed=_MAX_LIST))

    state = {mapping[k]: v for k, v in source.items() if k in mapping}
    report = dict(matched=sorted(state), missing=sorted(fresh), unexpected=[],
                  dropped=sorted(dropped_head + dropped_other + [s for s, _ in reinit_head]),
                  dropped_head=dropped_head, dropped_other=dropped_other,
                  reinitialised_head=[t for _, t in reinit_head])
    return state, report


def _deployable(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """Outermost sub-modules (or the model itself) that can build a twin: a ``deploy`` flag,
    ``switch_to_deploy`` and ``build_kwargs`` (their constructor arguments as they are now)."""
    found: List[Tuple[str, nn.Module]] = []
    for name, m in model.named_modules():
        if any(p == '' or name.startswith(p + '.') for p, _ in found):
            continue
        if (hasattr(m, 'deploy') and callable(getattr(m, 'switch_to_deploy', None))
                and isinstance(getattr(m, 'build_kwargs', None), dict)):
            found.append((name, m))
    return found


def _twin(m: nn.Module, **overrides: Any) -> nn.Module:
    """A fresh module of ``m``'s class and settings (never loading pretrained weights itself)."""
    return type(m)(**{**m.build_kwargs, 'init_cfg': None, **overrides})


def _merge_via_twin(model: nn.Module, source: 'OrderedDict[str, torch.Tensor]', logger: Any
                    ) -> Tuple['OrderedDict[str, torch.Tensor]', List[str], List[str]]:
    """Replace training-form weights of merged (deploy) sub-modules by their merged equivalents.

    For each deploy-form module a training-form twin is built, loaded strictly from the matching part
    of ``source``, merged by its own ``switch_to_deploy()`` and its state dict substituted
    into ``source``.
    Returns ``(new source, names of merged modules, keys the twins left initialised)``.
    """
    merged_names: List[str] = []
    fresh: List[str] = []
    if SD.detect_form(source) != 'train':
        return source, merged_names, fresh
    for name, m in _deployable(model):
        if not getattr(m, 'deploy', False):
            continue
        pre = f'{name}.' if name else ''
        twin = _twin(m, deploy=False)
        twin_keys = OrderedDict((pre + k, v.shape) for k, v in twin.state_dict().items())
        mapping, _, _ = SD.match_keys(source, twin_keys)
        if not mapping:
            continue
        sub = OrderedDict((mapping[k][len(pre):], v) for k, v in source.items() if k in mapping)
        # Source keys the twin does not take stay for the outer match (other heads, classifiers, ...).
        rest = OrderedDict((k, v) for k, v in source.items() if k not in mapping)
        state, rep = _match(twin, sub, f'training-form twin of {type(m).__name__}')
        twin.load_state_dict(state, strict=False)
        twin.eval()
        # A deployable merges itself in place (the contract mmlk.models.utils.reparam.reparameterize walks);
        # calling it directly keeps this file layer free of model code.
        if twin.switch_to_deploy() is not None:
            raise TypeError(f'{type(m).__name__}.switch_to_deploy replaced the module instead of merging in place')
        fresh += [pre + k for k in rep['missing'] if not k.endswith('num_batches_tracked')]
        source = OrderedDict(list(rest.items()) + [(pre + k, v) for k, v in twin.state_dict().items()])
        merged_names.append(name or type(m).__name__)
        del twin
    return source, merged_names, fresh


def _layouts(m: nn.Module) -> List[dict]:
    """The other merged layouts a deployable's family releases files in, and how to reach its own.

    A family declares them as the class attribute ``merged_layouts``: dicts with ``build`` (the constructor
    arguments of that layout, e.g. ``dict(fold_block_norm=False)``), ``keys`` (a regex of state-dict keys only
    that layout has), ``finish`` (the method that turns a model built that way into the default layout) and
    ``hint`` (what to tell a user whose file fits neither). Layouts the module is already built in are skipped.
    """
    return [lay for lay in getattr(m, 'merged_layouts', ())
            if any(m.build_kwargs.get(k) != v for k, v in lay['build'].items())]


def _relayout_via_twin(model: nn.Module, source: 'OrderedDict[str, torch.Tensor]'
                       ) -> Tuple['OrderedDict[str, torch.Tensor]', List[str]]:
    """Load a merged file of another merged layout (see :func:`_layouts`) into deploy-form modules.

    A twin is built in the file's layout (``deploy=True`` plus the layout's ``build``), loaded strictly,
    turned into the module's own layout by its ``finish`` method, and its state dict substituted into ``source``.
    """
    done: List[str] = []
    for name, m in _deployable(model):
        pre = f'{name}.' if name else ''
        if not getattr(m, 'deploy', False):
            continue
        own = {k[len(pre):] for k in model.state_dict() if k.startswith(pre)}
        for lay in _layouts(m):
            # (the file's keys may or may not carry the module's prefix: match_keys maps both)
            layout_keys = [k for k in source if re.search(lay['keys'], k)]
            if not layout_keys or any(k[len(pre):] in own for k in layout_keys if k.startswith(pre)):
                continue
            twin = _twin(m, deploy=True, **lay['build'])
            twin_keys = OrderedDict((pre + k, v.shape) for k, v in twin.state_dict().items())
            mapping, _, _ = SD.match_keys(source, twin_keys)
            sub = OrderedDict((mapping[k][len(pre):], v) for k, v in source.items() if k in mapping)
            rest = OrderedDict((k, v) for k, v in source.items() if k not in mapping)
            state, _ = _match(twin, sub, f'{lay["name"]} twin of {type(m).__name__}')
            twin.load_state_dict(state, strict=False)
            twin.eval()
            getattr(twin, lay['finish'])()
            source = OrderedDict(list(rest.items()) + [(pre + k, v) for k, v in twin.state_dict().items()])
            done.append(f'{name or type(m).__name__} ({lay["name"]})')
            break
    return source, done


def _layout_hints(model: nn.Module, source: Dict[str, torch.Tensor]) -> List[str]:
    """The hints of the merged layouts whose keys ``source`` has but the model was not built for."""
    return [lay['hint'] for _, m in _deployable(model) if getattr(m, 'deploy', False) for lay in _layouts(m)
            if any(re.search(lay['keys'], k) for k in source)]


def load_pretrained(model: nn.Module, checkpoint: Union[str, os.PathLike], prefix: Optional[str] = None,
                    map_location: Any = 'cpu', logger: Any = None, ema: Optional[bool] = None) -> dict:
    """Load released weights into ``model`` with strict, reported key checking.

    Args:
        model: an mmlk backbone, or any model containing one (mmpretrain classifier, mmseg segmentor,
            mmdet detector).
        checkpoint: a ``checkpoints.yaml`` name, a local path, or a URL.
        prefix: only use keys under this prefix (stripped), as mmengine's ``Pretrained`` init does, e.g.
            ``'backbone.'`` to take the backbone of a detector checkpoint. Without it a backbone model
            takes the ``backbone.`` part of downstream / mmpretrain files automatically.
        map_location: where tensors are loaded.
        logger: mmengine logger (or name); defaults to the current one.
        ema: for timm train-script files (``state_dict`` + ``state_dict_ema``): True loads the EMA
            weights, False the model weights; None takes the ``weights`` field of the checkpoints.yaml
            entry, else the model weights.

    Returns:
        A report ``dict(matched, missing, unexpected, dropped, merged, format, file)``: ``missing`` lists
        the keys left initialised on purpose (see the module docstring); ``unexpected`` is always empty,
        since anything unexpected raises :class:`~mmlk.checkpoint.CheckpointError`.
    """
    path, entry = resolve_checkpoint(checkpoint)
    if ema is None and entry is not None and entry.get('weights') is not None:
        ema = entry['weights'] == 'ema'
    source, meta, fmt = read_state_dict(path, map_location, ema)
    label = entry['name'] if entry else osp.basename(path)
    n_total = len(source)
    outside = 0
    if prefix:
        p = prefix if prefix.endswith('.') else prefix + '.'
        selected = OrderedDict((k[len(p):], v) for k, v in source.items() if k.startswith(p))
        if not selected:
            tops = sorted({_top(k) for k in source})
            raise CheckpointError(f'{label}: no key starts with prefix {p!r}; the file\'s top-level names are '
                                  f'{SD.listed_keys(tops, _MAX_LIST)}')
        outside = n_total - len(selected)
        source = selected

    src_form = SD.detect_form(source)
    tgt_form = SD.detect_form(model.state_dict().keys())
    if src_form == 'merged' and tgt_form == 'train':
        raise CheckpointError(f'{label} holds merged (deploy-form) weights, which cannot be split back into '
                              'training branches: build the model with deploy=True (the configs under '
                              'configs/*/deploy/) or use the training-form release of the same model.')
    source, merged, twin_fresh = _merge_via_twin(model, source, logger)
    if src_form == 'merged' and tgt_form == 'merged':
        source, relaid = _relayout_via_twin(model, source)
        merged += relaid
    try:
        state, report = _match(model, source, label)
    except CheckpointError as e:
        hints = _layout_hints(model, source) if src_form == 'merged' else []
        if hints:
            raise CheckpointError(' '.join([str(e)] + hints)) from e
        raise
    result = model.load_state_dict(state, strict=False)
    # _match already accounted for every key; this guards against modules whose state_dict and
    # load_state_dict disagree.
    if result.unexpected_keys or set(result.missing_keys) - set(report['missing']):
        raise CheckpointError(f'{label}: load_state_dict disagreed with the key check (missing '
                              f'{SD.listed_keys(result.missing_keys, _MAX_LIST)}, '
                              f'unexpected {SD.listed_keys(result.unexpected_keys, _MAX_LIST)})')
    report['missing'] = sorted(set(report['missing']) | set(twin_fresh))
    report.update(merged=merged, format=fmt, file=path, weights=meta.get('weights'))

    if report['dropped_head']:
        # Name the informative tensors (largest first, no BN statistics): "head.weight (1000, 1024), ..."
        shown = sorted((k for k in report['dropped_head'] if not re.search(r'running_|num_batches', k)),
                       key=lambda k: (-source[k].dim(), k))
        shapes = ', '.join(f'{k} {tuple(source[k].shape)}' for k in shown[:4])
        _log(f'load_pretrained: dropped the classifier of {label} ({len(report["dropped_head"])} tensors: '
             f'{shapes}{", ..." if len(shown) > 4 else ""}); the model has no such head.', logger)
    if report['dropped_other'] or outside:
        parts = sorted({_top(k) for k in report['dropped_other']})
        n = len(report['dropped_other']) + outside
        _log(f'load_pretrained: used the {"prefix " + repr(prefix) if prefix else "backbone"} of {label}; '
             f'ignored {n} other tensors{" (" + ", ".join(parts) + ")" if parts else ""}.', logger)
    if report['reinitialised_head']:
        _log(f'load_pretrained: the head of {label} has another class count; left the model\'s head initialised '
             f'({SD.listed_keys(report["reinitialised_head"], _MAX_LIST)}).', logger)
    if merged:
        _log(f'load_pretrained: {label} is in training form; merged it on the fly into the deploy-form '
             f'{", ".join(merged)}.', logger)
    fresh_shown = [k for k in report['missing'] if not k.endswith('num_batches_tracked')]
    fresh_text = f' ({SD.listed_keys(fresh_shown, _MAX_LIST)})' if fresh_shown else ''
    what = f'{fmt}, {meta["weights"]}' if meta.get('weights') else fmt
    _log(f'load_pretrained: {label} ({what}) -> {type(model).__name__}: {len(report["matched"])} matched, '
         f'{len(fresh_shown)} left initialised{fresh_text}, '
         f'0 unexpected, {len(report["dropped"]) + outside} dropped.', logger)
    return report
