"""``load_pretrained``: resolve, read, adapt and strictly load released weights into an mmlk model.

Used by every mmlk backbone's ``init_weights`` for ``init_cfg=dict(type='Pretrained', checkpoint=...)``
and by the converters in ``tools/model_converters``. Compared with upstream loaders (``strict=False`` that
silently ignored missing keys, loading inside ``__init__``):

* ``checkpoint`` may be a ``checkpoints.yaml`` name (cached, downloaded and sha256-verified), a path or
  a URL;
* every released format is recognised (official RepLKNet / RepNeXt, RepNeXt's fused TorchScript,
  mmpretrain classifiers, mmseg 0.x / mmdet 2.x downstream checkpoints);
* a training-form file loads into a merged (``deploy=True``) model: a training-form twin is built from
  the model's ``build_kwargs``, loaded strictly, merged with ``reparameterize()`` and copied over;
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
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import torch
import torch.nn as nn

from . import state_dict as SD
from .download import check_sha256, download_file, download_lock, verify_cached
from .errors import CheckpointError
from .reader import read_checkpoint
from .registry import (cache_file_name, cache_path, default_cache_dir, direct_alternatives, direct_urls, get_entry,
                       manual_locations, suggest_names, url_cache_path)

_MAX_LIST = 8


def _log(msg: str, logger: Any = None, level: int = logging.INFO) -> None:
    try:
        from mmengine.logging import print_log
        print_log(msg, logger=logger if logger is not None else 'current', level=level)
    except ImportError:  # mmengine is a hard dependency, but keep the loader usable without it
        print(msg)


def manual_hint(entry: dict, dest: str) -> str:
    where = '; '.join(manual_locations(entry)) or 'no public location is recorded'
    return (f'Download "{entry["name"]}" by hand ({where}) and save it as {dest}, or pass the file\'s path '
            'instead of the name.')


def _file_url_path(url: str) -> str:
    """The local path of a ``file://`` URL (read in place: never copied into the cache)."""
    parsed = urlparse(url)
    if parsed.netloc not in ('', 'localhost'):
        raise CheckpointError(f'{url}: file:// URLs must name a local file (file:///path); use the path itself')
    path = url2pathname(unquote(parsed.path))
    if not osp.isfile(path):
        what = ('is a directory' if osp.isdir(path) else
                'is not a regular file' if osp.exists(path) else 'does not exist')
        raise CheckpointError(f'{url}: {path} {what}; give the path of a checkpoint file')
    return path


def _legacy_cached(entry: dict, cache: str) -> Optional[str]:
    """A file cached flat as ``<cache>/<file name>`` by earlier mmlk versions, reused only if its hash is known
    and matches (flat names were shared between sources, so nothing else vouches for it)."""
    expected = entry.get('sha256')
    try:
        old = osp.join(cache, cache_file_name(entry))
    except CheckpointError:
        return None
    if not expected or not osp.isfile(old):
        return None
    try:
        check_sha256(old, expected)
    except CheckpointError:
        return None  # another source's file of the same name: leave it alone, fetch our own
    return old


def resolve_checkpoint(checkpoint: Union[str, os.PathLike], cache_dir: Optional[str] = None,
                       download: Optional[bool] = None, progress: bool = True, max_bytes: Optional[int] = None,
                       stall_timeout: Optional[float] = None) -> Tuple[str, Optional[dict]]:
    """Turn a checkpoints.yaml name, a path or a URL into a local, verified file.

    Args:
        checkpoint: name (e.g. ``'replknet-31b_in1k-224'``), local path, http(s) URL, or ``file://`` URL
            (read in place, like a path).
        cache_dir: cache for names and URLs. Defaults to ``$MMLK_CACHE_DIR`` or ``~/.cache/mmlk/checkpoints``.
            Names are cached as ``<cache>/<name>/<file>``, URLs as ``<cache>/url-<host>-<digest>/<file>``.
        download: fetch missing files; defaults to True unless ``$MMLK_OFFLINE`` is set.
        progress: show a progress bar while downloading.
        max_bytes: download size limit when neither the registry nor the server states the size
            (default ``$MMLK_DOWNLOAD_MAX_BYTES`` or 4 GiB).
        stall_timeout: seconds without progress before a download stops (default
            ``$MMLK_DOWNLOAD_STALL_TIMEOUT`` or 60).

    Returns:
        ``(local path, checkpoints.yaml entry or None)``.
    """
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f'checkpoint must be a name, path or URL string, got {type(checkpoint).__name__}')
    spec = os.fspath(checkpoint)
    cache = cache_dir or default_cache_dir()
    if download is None:
        download = not os.environ.get('MMLK_OFFLINE')
    limits = dict(progress=progress, max_bytes=max_bytes, stall_timeout=stall_timeout)
    local = osp.expanduser(spec)
    if osp.isfile(local):
        return local, None
    if osp.isdir(local):
        raise CheckpointError(f'{spec} is a directory, not a checkpoint file; give the path of the file')
    if re.match(r'^file://', spec, flags=re.I):
        return _file_url_path(spec), None
    if re.match(r'^https?://', spec, flags=re.I):
        dest = url_cache_path(spec, cache)
        name = osp.basename(dest)
        # OpenMMLab / torch.hub convention: "<name>-<sha256 prefix>.<ext>".
        m = re.search(r'-([0-9a-f]{8,64})\.[A-Za-z]+$', name)
        prefix = m.group(1) if m else None
        if osp.isfile(dest):
            verify_cached(dest, prefix)
            return dest, None
        if not download:
            raise CheckpointError(f'{spec} is not in the cache {cache} and downloads are off (MMLK_OFFLINE)')
        with download_lock(dest):
            if osp.isfile(dest):  # another process fetched it while we waited
                verify_cached(dest, prefix)
                return dest, None
            return download_file(spec, dest, sha256=prefix, **limits), None
    entry = get_entry(spec)
    if entry is None:
        close = suggest_names(spec)
        hint = f' Did you mean {", ".join(close)}?' if close else ' `python -m mmlk list` shows the names.'
        raise CheckpointError(f'{spec!r} is neither an existing file, a URL, nor a name in checkpoints.yaml.{hint}')
    if entry.get('format') == 'coreml':
        raise CheckpointError(f'{entry["name"]} is a Core ML model (on-device inference); it holds no PyTorch '
                              'weights. Use the .pth entry of the same model.')
    dest = cache_path(entry, cache)
    if osp.isfile(dest):
        verify_cached(dest, entry.get('sha256'))
        return dest, entry
    old = _legacy_cached(entry, cache)
    if old is not None:
        return old, entry
    urls = direct_urls(entry)
    hint = manual_hint(entry, dest)
    if not urls:
        alt = direct_alternatives(entry)
        alt_hint = (f' The same weights, converted by OpenMMLab, download directly: use {" or ".join(map(repr, alt))} '
                    'instead (mmlk loads that format too).' if alt else '')
        raise CheckpointError(f'{entry["name"]} is published only on Google Drive / Baidu, which need a browser, '
                              f'so mmlk cannot fetch it. {hint}{alt_hint}')
    if not download:
        raise CheckpointError(f'{entry["name"]} is not in the cache and downloads are off (MMLK_OFFLINE). {hint}')
    size = entry.get('size')
    errors = []
    with download_lock(dest):
        if osp.isfile(dest):  # another process fetched it while we waited
            verify_cached(dest, entry.get('sha256'))
            return dest, entry
        for url in urls:
            try:
                return download_file(url, dest, sha256=entry.get('sha256'), manual_hint=hint,
                                     expected_size=int(size) if size else None, **limits), entry
            except CheckpointError as e:
                errors.append(str(e))
    raise CheckpointError('\n'.join(errors))


def read_state_dict(path: str, map_location: Any = 'cpu', ema: Optional[bool] = None
                    ) -> Tuple['OrderedDict[str, torch.Tensor]', dict, str]:
    """Read any supported file into ``(state dict in official names, meta, format)``.

    ``ema`` chooses between the model and EMA weights of timm train-script files (see
    :func:`mmlk.checkpoint.state_dict.select_timm_train_weights`); ``meta['weights']`` then names the one used.
    Other formats hold one set of weights; asking them for EMA weights is an error.
    """
    obj, kind = read_checkpoint(path, map_location)
    if kind == 'torchscript':
        state, meta, fmt = OrderedDict(obj), {}, 'repnext-torchscript'
    elif SD.is_timm_train_checkpoint(obj):
        inner, which = SD.select_timm_train_weights(obj, ema)
        state, meta, _ = SD.unwrap_state_dict(inner)
        meta = dict(meta, weights=which, epoch=obj.get('epoch'), arch=obj.get('arch'))
        fmt = SD.TIMM_TRAIN_FORMAT
    else:
        state, meta, container = SD.unwrap_state_dict(obj)
        fmt = SD.detect_format(state, container)
    if ema and fmt != SD.TIMM_TRAIN_FORMAT:
        raise CheckpointError(f'{osp.basename(path)} ({fmt}) holds a single set of weights; EMA weights can only be '
                              'chosen from timm train-script checkpoints (state_dict_ema). Drop ema=True.')
    return SD.canonicalize(state, fmt), meta, fmt


# ------------------------------------------------------------------------------------------ matching
def _top(key: str) -> str:
    return key.split('.', 1)[0]


def _fmt_keys(keys: List[str]) -> str:
    keys = list(keys)
    more = f' ... (+{len(keys) - _MAX_LIST} more)' if len(keys) > _MAX_LIST else ''
    return ', '.join(keys[:_MAX_LIST]) + more


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
        parts = [f'{label}: the checkpoint does not fit the model ({len(mapping)} keys matched, '
                 f'{len(missing)} missing, {len(unexpected)} unexpected, {len(bad_shapes)} with other shapes).']
        hint = _mismatch_message(source, target, label)
        if hint:
            parts.append(hint)
        if bad_shapes:
            parts.append('Shape differences: ' + '; '.join(
                f'{s} {tuple(source[s].shape)} vs {t} {tuple(target[t])}' for s, t in bad_shapes[:_MAX_LIST]))
        if missing:
            parts.append(f'Missing in the file: {_fmt_keys(missing)}.')
        if unexpected:
            parts.append(f'Not in the model: {_fmt_keys(unexpected)}.')
        if not mapping:
            parts.append('No key matched at all: is `prefix` right, and is this a checkpoint of this architecture?')
        raise CheckpointError(' '.join(parts))

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


def _refold_via_twin(model: nn.Module, source: 'OrderedDict[str, torch.Tensor]'
                     ) -> Tuple['OrderedDict[str, torch.Tensor]', List[str]]:
    """Load upstream's fused RepNeXt layout (block norms kept) into a deploy model that folds them.

    Upstream's fused files keep every block / downsample BatchNorm; mmlk's default deploy form
    (``fold_block_norm=True``) folds them into the neighbouring convs. A twin in the upstream layout
    (``deploy=True, fold_block_norm=False``) is loaded strictly and its norms are then folded with
    ``RepNeXt.fold_block_norms()`` (the merged convs are left alone).
    """
    done: List[str] = []
    for name, m in _deployable(model):
        pre = f'{name}.' if name else ''
        if not (getattr(m, 'deploy', False) and m.build_kwargs.get('fold_block_norm')):
            continue
        own = {k[len(pre):] for k in model.state_dict() if k.startswith(pre)}
        norm_keys = [k for k in source if re.search(r'stages\.\d+\.(blocks\.\d+|downsample)\.norm\.', k)]
        if not norm_keys or any(k[len(pre):] in own for k in norm_keys if k.startswith(pre)):
            continue
        twin = _twin(m, deploy=True, fold_block_norm=False)
        twin_keys = OrderedDict((pre + k, v.shape) for k, v in twin.state_dict().items())
        mapping, _, _ = SD.match_keys(source, twin_keys)
        sub = OrderedDict((mapping[k][len(pre):], v) for k, v in source.items() if k in mapping)
        rest = OrderedDict((k, v) for k, v in source.items() if k not in mapping)
        state, _ = _match(twin, sub, f'fused-layout twin of {type(m).__name__}')
        twin.load_state_dict(state, strict=False)
        twin.eval()
        twin.fold_block_norms()
        source = OrderedDict(list(rest.items()) + [(pre + k, v) for k, v in twin.state_dict().items()])
        done.append(name or type(m).__name__)
    return source, done


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
        since anything unexpected raises :class:`CheckpointError`.
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
                                  f'{_fmt_keys(tops)}')
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
        source, refolded = _refold_via_twin(model, source)
        merged += [f'{n} (block norms folded)' for n in refolded]
    try:
        state, report = _match(model, source, label)
    except CheckpointError as e:
        if (fmt == 'repnext-torchscript' and SD.detect_family(source) == 'repnext'
                and any('blocks.0.norm.' in k for k in source)):
            raise CheckpointError(f'{e} Note: upstream\'s fused files keep the block norms; build RepNeXt with '
                                  'deploy=True, fold_block_norm=False to load them, or load the training-form '
                                  'release (it merges on the fly into any deploy form).') from e
        raise
    result = model.load_state_dict(state, strict=False)
    # _match already accounted for every key; this guards against modules whose state_dict and
    # load_state_dict disagree.
    if result.unexpected_keys or set(result.missing_keys) - set(report['missing']):
        raise CheckpointError(f'{label}: load_state_dict disagreed with the key check (missing '
                              f'{_fmt_keys(result.missing_keys)}, unexpected {_fmt_keys(result.unexpected_keys)})')
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
             f'({_fmt_keys(report["reinitialised_head"])}).', logger)
    if merged:
        _log(f'load_pretrained: {label} is in training form; merged it on the fly into the deploy-form '
             f'{", ".join(merged)}.', logger)
    fresh_shown = [k for k in report['missing'] if not k.endswith('num_batches_tracked')]
    what = f'{fmt}, {meta["weights"]}' if meta.get('weights') else fmt
    _log(f'load_pretrained: {label} ({what}) -> {type(model).__name__}: {len(report["matched"])} matched, '
         f'{len(fresh_shown)} left initialised{" (" + _fmt_keys(fresh_shown) + ")" if fresh_shown else ""}, '
         f'0 unexpected, {len(report["dropped"]) + outside} dropped.', logger)
    return report
