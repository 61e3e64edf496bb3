"""RepNeXt's single-branch deploy forms: a whole token mixer as ONE depthwise convolution.

Zhao, Luo and Ouyang, "RepNeXt: A Fast Multi-Scale CNN using Structural Reparameterization", arXiv 2406.16004
(README: "reparameterized into a single-branch large-kernel depthwise convolution"). Built by
``ChunkConv.to_single_branch`` / ``CopyConv.to_single_branch`` in :mod:`mmlk.models.repnext.model`
(``RepNeXt.switch_to_deploy(single_branch=True)``); here only the modules that hold the merged kernels.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmlk.ops import LargeKernelDWConv2d


class SingleBranchChunkConv(nn.Module):
    """A whole ChunkConv as ONE 11 x 11 depthwise conv through :class:`mmlk.ops.LargeKernelDWConv2d`.

    The single-branch deploy form (RepNeXt README: "reparameterized into a single-branch large-kernel
    depthwise convolution"). For the multi-branch variants ``conv_l``'s inner bias makes the outer rows
    differ from any single conv; ``edge_taps`` (``(C, 11)``, zero outside the ``conv_l`` chunk) stores
    what the zero padding removes, and ``forward`` subtracts it per row, so the result is exact. The "E"
    variants need no such term (``border_bias=False``).

    Args:
        channels: Width of the block.
        border_bias: Keep the exact per-row border correction. Defaults to True.
        lk_impl: Implementation for :class:`mmlk.ops.LargeKernelDWConv2d`. Defaults to ``'auto'``.
    """

    kernel_size = 11

    def __init__(self, channels: int, border_bias: bool = True, lk_impl: str = 'auto') -> None:
        super().__init__()
        self.conv = LargeKernelDWConv2d(channels, self.kernel_size, bias=True, impl=lk_impl)
        if border_bias:
            self.register_buffer('edge_taps', torch.zeros(channels, self.kernel_size))
        else:
            self.edge_taps = None

    def _border_bias(self, height: int, like: torch.Tensor) -> torch.Tensor:
        # 1 where a vertical tap lands on the zero padding, 0 inside: a (C, H) row profile, cheap (O(C H k)).
        k = self.kernel_size
        outside = like.new_ones(1, 1, height + k - 1)
        outside[..., k // 2:k // 2 + height] = 0
        taps = self.edge_taps.to(like.dtype).unsqueeze(1)  # conv1d correlates, as the 11 x 1 conv did
        return -F.conv1d(outside, taps).reshape(1, -1, height, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.edge_taps is not None:
            y = y + self._border_bias(x.shape[-2], y)
        return y


class SingleBranchCopyConv(nn.Module):
    """A whole CopyConv as ONE depthwise 7 x 7 stride-2 conv on the input copied twice (``[x, x]``).

    Copying first keeps the output order ``[conv_s..., conv_m...]`` of the released layout (a grouped
    conv with two outputs per input channel would interleave them).
    """

    kernel_size = 7

    def __init__(self, channels: int) -> None:
        super().__init__()
        k = self.kernel_size
        self.conv = nn.Conv2d(2 * channels, 2 * channels, k, 2, k // 2, groups=2 * channels, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat((x, x), dim=1))
