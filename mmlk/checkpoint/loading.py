"""Minimal strict loader; the full one (names, formats, downloads, reports) replaces it."""
from typing import Optional

import torch
import torch.nn as nn


def load_pretrained(model: nn.Module, checkpoint: str, prefix: Optional[str] = None,
                    map_location: str = 'cpu', logger=None) -> dict:
    state = torch.load(checkpoint, map_location=map_location, weights_only=True)
    for key in ('state_dict', 'model'):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if prefix:
        p = prefix if prefix.endswith('.') else prefix + '.'
        state = {k[len(p):]: v for k, v in state.items() if k.startswith(p)}
    model.load_state_dict(state, strict=True)
    return dict(missing=[], unexpected=[])
