"""State-dict surgery shared by the loader and the converters.

Everything here works on plain ``{name: tensor}`` dicts: recognising which upstream format a file is in,
describing the architecture a state dict encodes (so a wrong-variant error can name the right variant),
and matching a file's keys to a model's keys.
"""
import re
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from .errors import CheckpointError

#: Published variants (REFERENCE: RepLKNet table, RepNeXt variants): used to name what a file holds.
REPLKNET_VARIANTS = {
    '31B': dict(channels=(128, 256, 512, 1024), layers=(2, 2, 18, 2), kernels=(31, 29, 27, 13)),
    '31L': dict(channels=(192, 384, 768, 1536), layers=(2, 2, 18, 2), kernels=(31, 29, 27, 13)),
    'XL': dict(channels=(256, 512, 1024, 2048), layers=(2, 2, 18, 2), kernels=(27, 27, 27, 13)),
}
REPNEXT_VARIANTS = {
    'M0': dict(channels=(40, 80, 160, 320), depths=(2, 2, 9, 1)),
    'M1': dict(channels=(48, 96, 192, 384), depths=(3, 3, 15, 2)),
    'M2': dict(channels=(56, 112, 224, 448), depths=(3, 3, 15, 2)),
    'M3': dict(channels=(64, 128, 256, 512), depths=(3, 3, 13, 2)),
    'M4': dict(channels=(64, 128, 256, 512), depths=(5, 5, 25, 4)),
    'M5': dict(channels=(80, 160, 320, 640), depths=(7, 7, 35, 2)),
    # single-branch "E" forms: same widths and depths, plain convs (see describe_arch)
    'M0E': dict(channels=(40, 80, 160, 320), depths=(2, 2, 9, 1)),
    'M1E': dict(channels=(48, 96, 192, 384), depths=(3, 3, 15, 2)),
    'M2E': dict(channels=(56, 112, 224, 448), depths=(3, 3, 15, 2)),
}

#: Top-level prefixes of OpenMMLab detectors / segmentors / classifiers other than the backbone.
DOWNSTREAM_PREFIXES = ('decode_head.', 'auxiliary_head.', 'neck.', 'rpn_head.', 'roi_head.', 'bbox_head.',
                       'mask_head.', 'semantic_head.', 'panoptic_head.', 'data_preprocessor.')
_CLASSIFIER = re.compile(r'^(backbone\.)?(norm|head|fc|classifier|head_dist)(\.|$)')


def unwrap_state_dict(obj: Any) -> Tuple['OrderedDict[str, torch.Tensor]', dict, str]:
    """Find the state dict in a loaded checkpoint object.

    Returns ``(state_dict, meta, container)`` where container names where it was found
    (``'flat'``, ``'state_dict'``, ``'model'``, ``'module'``).
    """
    meta: dict = {}
    container = 'flat'
    if isinstance(obj, Mapping):
        if isinstance(obj.get('meta'), Mapping):
            meta = dict(obj['meta'])
        for key in ('state_dict', 'model', 'module'):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj, container = inner, key
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError('the file holds no state dict (expected a dict of tensors, possibly under '
                              '"state_dict" or "model")')
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f'the file\'s top level mixes tensors and other objects ({bad[:5]}); it is not a '
                              'state dict nor a known checkpoint container (state_dict / model)')
    state = OrderedDict((str(k), v) for k, v in obj.items())
    # Weights saved from a DataParallel / DistributedDataParallel wrapper.
    if all(k.startswith('module.') for k in state):
        state = OrderedDict((k[len('module.'):], v) for k, v in state.items())
    return state, meta, container


#: timm's ``train.py`` (CheckpointSaver) writes ``{state_dict, [state_dict_ema], optimizer, epoch, arch, args,
#: version, metric, amp_scaler}``; RepNeXt's StarNet-recipe ``*.pth.tar`` releases use it.
TIMM_TRAIN_FORMAT = 'timm-train'
_TIMM_TRAIN_MARKERS = ('state_dict_ema', 'epoch', 'arch', 'version', 'optimizer', 'args')


def is_timm_train_checkpoint(obj: Any) -> bool:
    """True for a checkpoint written by timm's training script (model weights under ``state_dict``)."""
    return (isinstance(obj, Mapping) and isinstance(obj.get('state_dict'), Mapping)
            and sum(k in obj for k in _TIMM_TRAIN_MARKERS) >= 2)


def select_timm_train_weights(obj: Mapping, ema: Optional[bool] = None) -> Tuple[Mapping, str]:
    """Pick the model (``state_dict``) or EMA (``state_dict_ema``) weights of a timm train-script file.

    Args:
        obj: the loaded checkpoint (see :func:`is_timm_train_checkpoint`).
        ema: True for the EMA weights (an error if the file has none), False for the raw model
            weights, None for the raw model weights (what timm's ``validate.py`` loads by default).

    Returns:
        ``(weights, key)`` with key ``'state_dict'`` or ``'state_dict_ema'``.
    """
    if ema:
        inner = obj.get('state_dict_ema')
        if not isinstance(inner, Mapping) or not inner:
            raise CheckpointError('the timm training checkpoint holds no EMA weights ("state_dict_ema"): it was '
                                  'trained without --model-ema. Load its model weights instead (ema=False).')
        return inner, 'state_dict_ema'
    return obj['state_dict'], 'state_dict'


def detect_family(keys) -> Optional[str]:
    keys = list(keys)
    if any('.large_kernel.' in k or '.prelkb_bn.' in k for k in keys):
        return 'replknet'
    if any('.token_mixer.' in k or k.startswith(('stem.stem.', 'backbone.stem.stem.')) for k in keys):
        return 'repnext'
    return None


def detect_form(keys) -> Optional[str]:
    """``'train'`` (re-parameterisable branches present), ``'merged'``, or None if undecidable."""
    keys = list(keys)
    fam = detect_family(keys)
    if fam == 'replknet':
        if any('.lkb_origin.' in k for k in keys):
            return 'train'
        if any('.lkb_reparam.' in k for k in keys):
            return 'merged'
    elif fam == 'repnext':
        # ConvNorms (``*.conv.weight`` + ``*.norm.*``) mark the training form of the single-branch "E"
        # variants too, whose plain depthwise convs look like merged ones
        if any('.conv_3_3.' in k or '.conv_7_7.' in k or k.endswith('channel_mixer.0.conv.weight') for k in keys):
            return 'train'
        if any(re.search(r'token_mixer\.conv(_[sm])?\.weight$', k) for k in keys):
            return 'merged'
    return None


def detect_format(state: Mapping[str, torch.Tensor], container: str = 'flat') -> str:
    """Name the upstream format of a state dict (one of registry.FORMATS, or 'unknown')."""
    keys = list(state)
    has_backbone = any(k.startswith('backbone.') for k in keys)
    fam = detect_family(keys)
    if has_backbone and any(k.startswith('head.fc.') for k in keys):
        return 'mmpretrain'
    if has_backbone and any(k.startswith(('decode_head.', 'auxiliary_head.')) for k in keys):
        return 'mmseg0.x'
    if has_backbone and any(k.startswith(('rpn_head.', 'roi_head.', 'bbox_head.', 'neck.')) for k in keys):
        return 'mmdet2.x'
    if fam == 'replknet':
        return 'replknet-official'
    if fam == 'repnext':
        return 'repnext-official'
    return 'unknown'


def task_of(keys) -> str:
    keys = list(keys)
    if any(k.startswith(('decode_head.', 'auxiliary_head.')) for k in keys):
        return 'segmentation (mmseg)'
    if any(k.startswith('roi_head.') for k in keys):
        return 'two-stage detection (mmdet)'
    if any(k.startswith('bbox_head.') for k in keys):
        return 'one-stage detection (mmdet)'
    if any(_CLASSIFIER.match(k) for k in keys):
        return 'classification'
    return 'backbone'


def _strip(keys, prefix='backbone.'):
    return [k[len(prefix):] if k.startswith(prefix) else k for k in keys]


def describe_arch(state: Mapping[str, Any]) -> Optional[dict]:
    """Infer the architecture a state dict encodes from tensor shapes.

    Returns ``dict(family, variant, text)``; ``variant`` is the published name when the numbers match
    one (REPLKNET_VARIANTS / REPNEXT_VARIANTS), else None.
    """
    shapes = {}
    for k, v in state.items():
        kk = k[len('backbone.'):] if k.startswith('backbone.') else k
        shapes[kk] = tuple(v.shape) if hasattr(v, 'shape') else tuple(v)
    fam = detect_family(shapes)
    if fam is None:
        return None
    blocks: Dict[int, set] = {}
    for k in shapes:
        m = re.match(r'stages\.(\d+)\.blocks\.(\d+)\.', k)
        if m:
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    stages = sorted(blocks)
    if fam == 'replknet':
        layers, channels, kernels = [], [], []
        for i in stages:
            layers.append((max(blocks[i]) + 1) // 2)
            ch = None
            for cand in (f'stages.{i}.blocks.1.preffn_bn.weight', f'stages.{i}.blocks.1.pw2.bn.weight',
                         f'stages.{i}.blocks.1.pw2.conv.weight', f'stages.{i}.blocks.1.pw2.weight'):
                if cand in shapes:
                    ch = shapes[cand][0]
                    break
            channels.append(ch)
            ks = None
            for cand in (f'stages.{i}.blocks.0.large_kernel.lkb_origin.conv.weight',
                         f'stages.{i}.blocks.0.large_kernel.lkb_reparam.weight'):
                if cand in shapes:
                    ks = shapes[cand][-1]
                    break
            kernels.append(ks)
        variant = next((n for n, a in REPLKNET_VARIANTS.items()
                        if a['channels'] == tuple(channels) and a['layers'] == tuple(layers)
                        and a['kernels'] == tuple(kernels)), None)
        text = (f'RepLKNet{"-" + variant if variant else ""} (channels {tuple(channels)}, layers {tuple(layers)}, '
                f'kernels {tuple(kernels)})')
        return dict(family=fam, variant=variant, text=text, channels=tuple(channels), depths=tuple(layers))
    depths, channels = [], []
    for i in stages:
        depths.append(max(blocks[i]) + 1)
        ch = None
        for cand in (f'stages.{i}.blocks.0.channel_mixer.2.conv.weight', f'stages.{i}.blocks.0.channel_mixer.2.weight'):
            if cand in shapes:
                ch = shapes[cand][0]
                break
        channels.append(ch)
    # the "E" variants mix with one conv per block (M0 and M0E share widths and depths); a multi-branch model
    # merged into the single-branch form has the same structure and is named E as well
    plain = any(k.endswith('token_mixer.conv.weight') for k in shapes)
    variant = next((n for n, a in REPNEXT_VARIANTS.items()
                    if a['channels'] == tuple(channels) and a['depths'] == tuple(depths)
                    and n.endswith('E') == plain), None)
    text = f'RepNeXt{"-" + variant if variant else ""} (channels {tuple(channels)}, depths {tuple(depths)})'
    return dict(family=fam, variant=variant, text=text, channels=tuple(channels), depths=tuple(depths))


def canonicalize(state: Mapping[str, torch.Tensor], fmt: str) -> 'OrderedDict[str, torch.Tensor]':
    """Rewrite format-specific names into the official layout (mmlk's own names).

    Only mmpretrain's RepLKNet port differs from the official names: its final BN is
    ``backbone.stages.3.norm`` (official ``norm``) and its Linear is ``head.fc`` (official ``head``).
    Other formats keep their keys (downstream files keep their ``backbone.`` / head prefixes).
    """
    if fmt != 'mmpretrain':
        return OrderedDict(state)
    out: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    fam = detect_family(state)
    for k, v in state.items():
        if k.startswith('backbone.'):
            k = k[len('backbone.'):]
            if fam == 'replknet' and k.startswith('stages.3.norm.'):
                k = 'norm.' + k[len('stages.3.norm.'):]
        elif k.startswith('head.fc.'):
            k = 'head.' + k[len('head.fc.'):]
        out[k] = v
    return out


def is_classifier_key(key: str) -> bool:
    return bool(_CLASSIFIER.match(key))


def is_downstream_key(key: str) -> bool:
    return key.startswith(DOWNSTREAM_PREFIXES)


def match_keys(src: Mapping[str, torch.Tensor], tgt: Mapping[str, torch.Size]
               ) -> Tuple[Dict[str, str], List[str], List[Tuple[str, str]]]:
    """Map source keys onto target keys.

    Each source key tries, in order: itself, ``backbone.`` + key, the key without ``backbone.``, and for a
    RepLKNet final BN / Linear the mmpretrain names. The first candidate present in the target wins.

    Returns ``(mapping src->tgt, unmatched source keys, shape mismatches [(src, tgt)])``.
    """
    mapping: Dict[str, str] = {}
    taken = set()
    unmatched: List[str] = []
    mismatched: List[Tuple[str, str]] = []
    # mmpretrain's own RepLKNet classifier keeps the final BN in the backbone's last stage and the Linear
    # under head.fc: only then are those renamings meaningful.
    mmpretrain_target = any(k.startswith('head.fc.') for k in tgt)
    for k, v in src.items():
        cands = [k, 'backbone.' + k]
        if k.startswith('backbone.'):
            cands.append(k[len('backbone.'):])
        m = re.match(r'^(backbone\.)?norm\.(.*)$', k)
        if m and mmpretrain_target:
            cands += [f'backbone.stages.3.norm.{m.group(2)}']
        m = re.match(r'^(backbone\.)?head\.(weight|bias)$', k)
        if m and mmpretrain_target:
            cands += [f'head.fc.{m.group(2)}']
        hit = None
        for c in cands:
            if c in tgt and c not in taken:
                if tuple(tgt[c]) == tuple(v.shape):
                    hit = c
                    break
                mismatched.append((k, c))
                hit = False
                break
        if hit:
            mapping[k] = hit
            taken.add(hit)
        elif hit is None:
            unmatched.append(k)
    return mapping, unmatched, mismatched
