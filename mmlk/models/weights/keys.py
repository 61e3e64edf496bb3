"""State-dict keys of mmlk models: the one place that describes, diffs and canonicalises them.

Everything here works on plain ``{name: tensor}`` dicts (or ``{name: shape}``): recognising which upstream
format a file is in, describing what a state dict holds (family, variant, form: the families themselves
read their keys through the codecs they register with :func:`register_family`, so this module
names no family), diffing it against a model (:func:`compare_state_dict`,
:func:`check_state_dict_fits`, the messages of ``load_state_dict``), and matching / canonicalising a
file's keys for the loader (:func:`match_keys`, :func:`canonicalize`).
"""
import re
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

#: Wrapper prefixes a whole state dict may carry (DataParallel, an mm model's backbone, timm's EMA wrappers).
WRAPPER_PREFIXES = ('module.', 'backbone.', 'model.')

#: Top-level prefixes of OpenMMLab detectors / segmentors / classifiers other than the backbone.
DOWNSTREAM_PREFIXES = ('decode_head.', 'auxiliary_head.', 'neck.', 'rpn_head.', 'roi_head.', 'bbox_head.',
                       'mask_head.', 'semantic_head.', 'panoptic_head.', 'data_preprocessor.')
_CLASSIFIER = re.compile(r'^(backbone\.)?(norm|head|fc|classifier|head_dist)(\.|$)')


#: How each state-dict form is named in messages (shared by the families' descriptions and the fit check).
FORM_TEXT = {'train': 'training form', 'merged': 'merged form', 'fused': 'fused form'}

#: The key codecs registered by the model families, in registration order (the first that owns a key set wins).
_FAMILIES: List[Any] = []


def register_family(codec: Any) -> Any:
    """Register a family's key codec; returns it, so it also works as a class decorator.

    This file layer knows no model: each family registers an object (its backbone class) with ``family``
    (its name), ``output_norm_pattern`` and the class methods ``owns_keys(keys)``, ``form_of(keys)``,
    ``describe_shapes(shapes)`` and optionally ``mmpretrain_renames`` (``(official prefix, mmpretrain
    prefix)`` pairs of its backbone keys). Registering the same codec twice is a no-op.
    """
    if codec not in _FAMILIES:
        _FAMILIES.append(codec)
    return codec


#: Formats of no particular family (``format`` in checkpoints.yaml); each family adds its own (``formats``).
GENERIC_FORMATS = {
    'timm-train': 'timm train.py checkpoint (.pth.tar): model weights under "state_dict", EMA under "state_dict_ema"',
    'mmpretrain': 'mmpretrain ImageClassifier checkpoint (backbone. prefix, the final norm / head.fc renamed)',
    'mmseg0.x': 'mmsegmentation 0.x checkpoint (mmcv meta/state_dict; backbone./decode_head./auxiliary_head.)',
    'mmdet2.x': 'mmdetection 2.x checkpoint (mmcv meta/state_dict; backbone./neck./rpn_head./roi_head.)',
    'coreml': 'Core ML model for on-device inference; cannot be loaded into PyTorch',
}


def known_formats() -> Dict[str, str]:
    """Every ``format`` value and what it means: the generic ones and those of the registered families."""
    out = dict(GENERIC_FORMATS)
    for fam in families():
        out.update(getattr(fam, 'formats', {}))
    return out


def families() -> Tuple[Any, ...]:
    """The registered key codecs (mmlk's backbone families register theirs when ``mmlk.models`` imports)."""
    return tuple(_FAMILIES)


def _family_of(keys: Sequence[str]) -> Optional[type]:
    return next((fam for fam in families() if fam.owns_keys(keys)), None)


def codec_of(keys) -> Optional[Any]:
    """The registered codec (backbone class) that owns a state dict's keys (``backbone.`` prefixes allowed)."""
    return _family_of(_strip(keys))


def _strip(keys, prefix='backbone.'):
    return [k[len(prefix):] if k.startswith(prefix) else k for k in keys]


def detect_family(keys) -> Optional[str]:
    """The registered family name of a state dict's keys (``backbone.`` prefixes allowed), or None."""
    fam = _family_of(_strip(keys))
    return fam.family if fam else None


def detect_form(keys) -> Optional[str]:
    """``'train'`` (re-parameterisable branches present), ``'merged'``, or None if undecidable.

    (A family's ``'fused'`` form, every norm folded, counts as ``'merged'`` here.)
    """
    keys = _strip(keys)
    fam = _family_of(keys)
    form = fam.form_of(keys) if fam else None
    return 'merged' if form == 'fused' else form


def detect_format(state: Mapping[str, torch.Tensor], container: str = 'flat') -> str:
    """Name the upstream format of a state dict (one of :func:`known_formats`, or 'unknown')."""
    keys = list(state)
    has_backbone = any(k.startswith('backbone.') for k in keys)
    fam = detect_family(keys)
    if has_backbone and any(k.startswith('head.fc.') for k in keys):
        return 'mmpretrain'
    if has_backbone and any(k.startswith(('decode_head.', 'auxiliary_head.')) for k in keys):
        return 'mmseg0.x'
    if has_backbone and any(k.startswith(('rpn_head.', 'roi_head.', 'bbox_head.', 'neck.')) for k in keys):
        return 'mmdet2.x'
    return f'{fam}-official' if fam else 'unknown'


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


def shapes_of(state: Mapping[str, Any], prefix: str = '') -> Dict[str, Tuple[int, ...]]:
    """``{key without prefix: shape}`` of tensors or shapes."""
    return {k[len(prefix):] if k.startswith(prefix) else k: tuple(v.shape) if hasattr(v, 'shape') else tuple(v)
            for k, v in state.items()}


def describe_arch(state: Mapping[str, Any]) -> Optional[dict]:
    """What a state dict holds (``backbone.`` prefixes allowed), from its keys and shapes, or None.

    Returns the family's description (see ``RepBackbone.describe_shapes``): ``family``, ``form``, ``arch``,
    ``arch_name`` / ``variant`` (the published name when the numbers match one), ``channels``, ``depths``,
    ``text``, ``extras``.
    """
    shapes = shapes_of(state, 'backbone.')
    fam = _family_of(list(shapes))
    return fam.describe_shapes(shapes) if fam else None


def state_prefix(keys: Sequence[str], prefixes: Sequence[str] = WRAPPER_PREFIXES) -> str:
    """The wrapper prefix every key shares (``''`` if none)."""
    keys = list(keys)
    for p in prefixes:
        if keys and all(k.startswith(p) for k in keys):
            return p
    return ''


def compare_state_dict(own: Mapping[str, torch.Tensor], state_dict: Mapping[str, Any]
                       ) -> Tuple[List[str], List[str], List[Tuple[str, tuple, tuple]]]:
    """``(missing, unexpected, mismatched)`` keys of ``state_dict`` against a model's ``own`` state;
    ``mismatched`` holds ``(key, file shape, model shape)``."""
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [(k, tuple(state_dict[k].shape), tuple(own[k].shape)) for k in own
                  if k in state_dict and hasattr(state_dict[k], 'shape')
                  and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    return missing, unexpected, mismatched


def listed_keys(keys: Sequence[str], max_listed: int = 8) -> str:
    """``a, b, c ... (+N more)``: the first ``max_listed`` keys of a list in a message."""
    keys = list(keys)
    more = f' ... (+{len(keys) - max_listed} more)' if len(keys) > max_listed else ''
    return ', '.join(keys[:max_listed]) + more


def model_text(model: Any) -> str:
    """How a misfit message names ``model``: an mmlk backbone's :meth:`~mmlk.models.RepBackbone.describe`
    (variant, form, extras), else its class name (a host's classifier or segmentor)."""
    describe = getattr(model, 'describe', None)
    return describe() if callable(describe) else type(model).__name__


def misfit_message(what: str, model_name: str, missing: Sequence[str], unexpected: Sequence[str],
                   mismatched: Sequence[Tuple[str, tuple, str, tuple]], *, checkpoint_text: Optional[str] = None,
                   hints: Sequence[str] = (), matched: Optional[int] = None, max_listed: int = 8) -> str:
    """The one "does not fit" message of mmlk's loading, whatever the policy that found the differences.

    ``load_state_dict`` / :func:`check_state_dict_fits` (every key exactly) and ``load_pretrained`` (keys matched
    across layouts, classifiers and downstream parts allowed to differ) decide differently what a difference is;
    both say it in this form: what was loaded and into what, the counts, what the checkpoint looks like, what to
    do (``hints``), then a few keys of each kind.

    Args:
        what: What was loaded (``'state dict'``, ``"RepLKNet 'file.pth'"``).
        model_name: The model, as :func:`model_text` names it.
        missing: Model keys the file does not fill.
        unexpected: File keys the model has no place for.
        mismatched: ``(file key, file shape, model key, model shape)`` pairs.
        checkpoint_text: What the file holds (variant, form), where known.
        hints: Sentences saying what to do.
        matched: How many keys matched, where a matching was done.
        max_listed: How many keys of each kind to list.
    """
    counts = f'{len(missing)} missing, {len(unexpected)} unexpected, {len(mismatched)} with other shapes'
    if matched is not None:
        counts = f'{matched} keys matched, {counts}'
    lines = [f'{what} does not fit the model {model_name} ({counts})'
             + (f'; the checkpoint looks like {checkpoint_text}.' if checkpoint_text else '.')]
    lines += list(hints)
    if mismatched:
        lines.append('Shape differences: ' + '; '.join(
            f'{fk}: checkpoint {fs} vs model {ms}' if fk == mk else f'{fk} {fs} vs {mk} {ms}'
            for fk, fs, mk, ms in mismatched[:max_listed]) + ('; ...' if len(mismatched) > max_listed else ''))
    if missing:
        lines.append(f'Missing in the file: {listed_keys(missing, max_listed)}.')
    if unexpected:
        lines.append(f'Not in the model: {listed_keys(unexpected, max_listed)}.')
    return '\n'.join(lines)


def check_state_dict_fits(model: Any, state_dict: Mapping[str, Any], raise_error: bool = True,
                          max_listed: int = 5) -> dict:
    """Check that ``state_dict`` has exactly the keys and shapes of an mmlk backbone ``model``.

    Args:
        model: A :class:`~mmlk.models.base.RepBackbone`.
        state_dict: The weights.
        raise_error: Raise ``ValueError`` on any difference (default); otherwise only report.
        max_listed: How many missing / unexpected / mismatched keys the message lists.

    Returns:
        ``dict(missing=[...], unexpected=[...], mismatched=[(key, file shape, model shape)],
        checkpoint=<description with 'prefix'>, message=str)``; ``message`` is '' if it fits.

    Raises:
        ValueError: If keys or shapes differ and ``raise_error``; the message names the model's and the
            file's variant/form, says what to do and lists a few offending keys.
    """
    missing, unexpected, mismatched = compare_state_dict(model.state_dict(), state_dict)
    prefix = state_prefix(list(state_dict))
    shapes = shapes_of(state_dict, prefix)
    fam = _family_of(list(shapes))
    info = dict(fam.describe_shapes(shapes) if fam else dict(family=None, form=None, text=None, extras=[]),
                prefix=prefix)
    message = ''
    if missing or unexpected or mismatched:
        if info['family'] is None:
            text = f'no recognisable {model.display_name} state dict'
        else:
            parts = [FORM_TEXT.get(info['form'], 'unknown form')] + list(info['extras'])
            text = ', '.join([info['text']] + parts + ([f'keys prefixed {prefix!r}'] if prefix else []))
        if prefix:
            hints = [f'Every key starts with {prefix!r}: strip it (prefix=...).']
        else:
            hints = model.state_dict_hints(info) if info['family'] == model.family else []
        message = misfit_message('state dict', model.describe(), missing, unexpected,
                                 [(k, a, k, b) for k, a, b in mismatched], checkpoint_text=text, hints=hints,
                                 max_listed=max_listed)
        if raise_error:
            raise ValueError(message)
    return dict(missing=missing, unexpected=unexpected, mismatched=mismatched, checkpoint=info, message=message)


def canonicalize(state: Mapping[str, torch.Tensor], fmt: str) -> 'OrderedDict[str, torch.Tensor]':
    """Rewrite format-specific names into the official layout (mmlk's own names).

    mmpretrain's Linear is ``head.fc`` (official ``head``); a family whose mmpretrain port renames backbone
    keys declares them as ``mmpretrain_renames`` (e.g. a final BN kept in the last stage).
    Other formats keep their keys (downstream files keep their ``backbone.`` / head prefixes).
    """
    if fmt != 'mmpretrain':
        return OrderedDict(state)
    out: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    fam = _family_of(_strip(state))
    # (official prefix, mmpretrain prefix) pairs the family declares; mmlk knows none itself.
    renames = getattr(fam, 'mmpretrain_renames', ()) if fam else ()
    for k, v in state.items():
        if k.startswith('backbone.'):
            k = k[len('backbone.'):]
            for official, theirs in renames:
                if k.startswith(theirs):
                    k = official + k[len(theirs):]
                    break
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

    Each source key tries, in order: itself, ``backbone.`` + key, the key without ``backbone.``, and, into an
    mmpretrain classifier, the names its port gives (the family's ``mmpretrain_renames``, ``head.fc``). The first
    candidate present in the target wins.

    Returns ``(mapping src->tgt, unmatched source keys, shape mismatches [(src, tgt)])``.
    """
    mapping: Dict[str, str] = {}
    taken = set()
    unmatched: List[str] = []
    mismatched: List[Tuple[str, str]] = []
    # mmpretrain's own classifier port keeps the final BN in the backbone's last stage and the Linear
    # under head.fc: only then are those renamings meaningful.
    mmpretrain_target = any(k.startswith('head.fc.') for k in tgt)
    fam = _family_of(_strip(src))
    # (official prefix, mmpretrain prefix) pairs the source's family declares, as canonicalize reads them
    renames = getattr(fam, 'mmpretrain_renames', ()) if fam and mmpretrain_target else ()
    for k, v in src.items():
        cands = [k, 'backbone.' + k]
        bare = k[len('backbone.'):] if k.startswith('backbone.') else k
        if k.startswith('backbone.'):
            cands.append(bare)
        cands += ['backbone.' + theirs + bare[len(official):] for official, theirs in renames
                  if bare.startswith(official)]
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
