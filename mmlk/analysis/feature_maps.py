"""Per-branch feature maps of a RepNeXt block (the picture in RepNeXt's README).

A RepNeXt block's token mixer (:class:`~mmlk.models.repnext.model.ChunkConv`) splits its input into
four channel chunks: identity, ``conv_s`` (3x3 group), ``conv_m`` (7x7 group) and ``conv_l`` (1x11 then
11x1). Hooking the mixer's input and running each branch on its chunk shows what each receptive-field
scale responds to. Each panel is the mean absolute activation over the chunk's channels, normalised
to [0, 1] per panel (the branches' scales differ, and only where each looks is of interest here).
"""
from typing import Dict, List, Sequence

import numpy as np
import torch
import torch.nn as nn

BRANCHES = ('identity', 'conv_s', 'conv_m', 'conv_l')
BRANCH_TITLES = {'identity': 'identity', 'conv_s': 'S (3x3 group)', 'conv_m': 'M (7x7 group)',
                 'conv_l': 'L (1x11, 11x1)'}


def find_chunk_conv(backbone: nn.Module, stage: int, block: int) -> nn.Module:
    """The token mixer of ``stages[stage].blocks[block]``; errors name the valid ranges."""
    from mmlk.models.repnext.model import ChunkConv
    stages = getattr(backbone, 'stages', None)
    if stages is None or not any(isinstance(m, ChunkConv) for m in backbone.modules()):
        raise TypeError(f'{type(backbone).__name__} is not a RepNeXt (no ChunkConv token mixers); build '
                        "the model with type='mmlk.RepNeXt' or timm's repnext_m*")
    if not 0 <= stage < len(stages):
        raise ValueError(f'--stage {stage} out of range: the model has stages 0..{len(stages) - 1}')
    blocks = stages[stage].blocks
    if not -len(blocks) <= block < len(blocks):
        raise ValueError(f'--block {block} out of range: stage {stage} has blocks 0..{len(blocks) - 1}')
    return blocks[block].token_mixer


@torch.no_grad()
def branch_maps(backbone: nn.Module, images: torch.Tensor, stage: int, block: int,
                forward=None) -> Dict[str, torch.Tensor]:
    """{branch: (N, h, w) mean abs(activation)} of the chosen block for a normalised image batch."""
    mixer = find_chunk_conv(backbone, stage, block)
    captured: List[torch.Tensor] = []

    def hook(_module, inputs):
        captured.append(inputs[0])
        # Stop the rest of the network: only this block's input is needed.
        raise _Stop

    handle = mixer.register_forward_pre_hook(hook)
    try:
        (forward or backbone)(images)
    except _Stop:
        pass
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError('the chosen block did not run in the forward pass')
    chunks = torch.chunk(captured[0], 4, dim=1)
    outs = dict(identity=chunks[0], conv_s=mixer.conv_s(chunks[1]), conv_m=mixer.conv_m(chunks[2]),
                conv_l=mixer.conv_l(chunks[3]))
    return {k: v.abs().mean(dim=1) for k, v in outs.items()}


class _Stop(Exception):
    """Raised by the hook to end the forward pass early."""


def _normalise(m: np.ndarray) -> np.ndarray:
    lo, hi = float(m.min()), float(m.max())
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def save_grid(images_rgb: Sequence[np.ndarray], maps: Dict[str, torch.Tensor], path: str,
              title: str = '') -> str:
    """Write one row per image: the input, then the four branch maps (bilinearly resized for display)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows, cols = len(images_rgb), 1 + len(BRANCHES)
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.0 * rows + (0.3 if title else 0)), dpi=80,
                             squeeze=False)
    for r, img in enumerate(images_rgb):
        axes[r][0].imshow(img)
        if r == 0:
            axes[r][0].set_title('input', fontsize=9)
        for c, name in enumerate(BRANCHES, start=1):
            axes[r][c].imshow(_normalise(maps[name][r].float().cpu().numpy()), cmap='viridis',
                              interpolation='bilinear')
            if r == 0:
                axes[r][c].set_title(BRANCH_TITLES[name], fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
