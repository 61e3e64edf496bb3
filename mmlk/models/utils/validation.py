"""Argument and state-dict checks shared by mmlk's backbones, so RepLKNet and RepNeXt say the same things."""
from typing import List, Mapping, Sequence, Tuple, Union

import torch


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


def compare_state_dict(own: Mapping[str, torch.Tensor], state_dict: Mapping[str, torch.Tensor]
                       ) -> Tuple[List[str], List[str], List[Tuple[str, tuple, tuple]]]:
    """``(missing, unexpected, mismatched)`` keys of ``state_dict`` against a model's ``own`` state."""
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [(k, tuple(state_dict[k].shape), tuple(own[k].shape)) for k in own
                  if k in state_dict and hasattr(state_dict[k], 'shape')
                  and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    return missing, unexpected, mismatched


def format_state_dict_mismatch(model_text: str, checkpoint_text: str, hints: Sequence[str],
                               missing: List[str], unexpected: List[str],
                               mismatched: List[Tuple[str, tuple, tuple]], max_listed: int = 5) -> str:
    """The message of a state dict that does not fit: both sides named, what to do, a few keys of each kind."""
    lines = [f'state dict does not fit {model_text}; the checkpoint looks like {checkpoint_text}.']
    lines += list(hints)
    if missing:
        lines.append(f'{len(missing)} missing keys, e.g. {missing[:max_listed]}')
    if unexpected:
        lines.append(f'{len(unexpected)} unexpected keys, e.g. {unexpected[:max_listed]}')
    if mismatched:
        shown = [f'{k}: checkpoint {a} vs model {b}' for k, a, b in mismatched[:max_listed]]
        lines.append(f'{len(mismatched)} shape mismatches, e.g. {shown}')
    return '\n'.join(lines)


def state_prefix(keys: Sequence[str], prefixes: Sequence[str] = ('module.', 'backbone.', 'model.')) -> str:
    """The wrapper prefix every key shares (``''`` if none)."""
    keys = list(keys)
    for p in prefixes:
        if keys and all(k.startswith(p) for k in keys):
            return p
    return ''

