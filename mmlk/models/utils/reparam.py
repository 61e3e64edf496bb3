"""Structural re-parameterisation, shared by every mmlk backbone: the arithmetic and the module contract.

The arithmetic functions are pure tensor maths on ``(out, in/groups, kh, kw)`` kernels, so merging is exact up
to floating-point rounding and independent of how a module stores its parts. :func:`reparameterize` is the one
walker that switches a model's mergeable modules to their deploy form (the contract is in its docstring).
"""
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


def fuse_conv_bn(weight: torch.Tensor, bias: Optional[torch.Tensor],
                 bn: nn.modules.batchnorm._BatchNorm) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm that follows a conv into the conv's weight and bias.

    ``bn(conv(x)) == conv'(x)`` with ``w' = w * g / s`` and ``b' = beta + (b - mean) * g / s``,
    ``s = sqrt(var + eps)``. Works for any norm with running statistics (BN, SyncBN); a BN without
    affine parameters counts as ``g = 1, beta = 0``.
    """
    scale, shift = bn_scale_shift(bn)
    fused_weight = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    fused_bias = shift if bias is None else shift + bias * scale
    return fused_weight, fused_bias


def pad_kernel(kernel: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Zero-pad a ``(..., kh, kw)`` kernel symmetrically to ``size`` (both odd, centres aligned)."""
    # Indexed one by one (not unpacked from a slice): TorchScript needs a statically sized unpacking.
    kh, kw = kernel.shape[-2], kernel.shape[-1]
    th, tw = size
    if (th - kh) % 2 != 0 or (tw - kw) % 2 != 0 or th < kh or tw < kw:
        raise ValueError(f'cannot centre a {kh}x{kw} kernel inside {th}x{tw}')
    ph, pw = (th - kh) // 2, (tw - kw) // 2
    return F.pad(kernel, [pw, pw, ph, ph])


def bn_scale_shift(bn: nn.modules.batchnorm._BatchNorm) -> Tuple[torch.Tensor, torch.Tensor]:
    """Return ``(scale, shift)`` with ``bn(x) == x * scale + shift`` per channel (eval mode)."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f'cannot fold {type(bn).__name__} without running statistics '
                         '(track_running_stats=False); merge is only exact for BN-like norms')
    std = (bn.running_var + bn.eps).sqrt()
    gamma = bn.weight if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(std)
    scale = gamma / std
    return scale, beta - bn.running_mean * scale


def fold_bn_into_next(weight: torch.Tensor, bias: Optional[torch.Tensor],
                      bn: nn.modules.batchnorm._BatchNorm) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm that *precedes* a dense (groups=1) conv or linear layer.

    ``layer(bn(x)) == layer'(x)`` with ``w'[o, i] = w[o, i] * scale[i]`` and
    ``b' = b + sum_{i, taps} w[o, i] * shift[i]``. Exact only where the layer never sees zero padding
    (a 1x1 conv or a Linear): a padded border would see ``0`` instead of ``shift``.
    ``weight`` is ``(out, in)`` or ``(out, in, kh, kw)``.
    """
    scale, shift = bn_scale_shift(bn)
    if weight.shape[1] != scale.numel():
        raise ValueError(f'the layer takes {weight.shape[1]} input channels but the norm has {scale.numel()}; '
                         'only dense (groups=1) layers can absorb a preceding norm')
    view = (1, -1) + (1,) * (weight.dim() - 2)
    fused_weight = weight * scale.reshape(view)
    taps = weight.flatten(2).sum(-1) if weight.dim() > 2 else weight
    fused_bias = taps @ shift
    if bias is not None:
        fused_bias = fused_bias + bias
    return fused_weight, fused_bias


def dilate_kernel(kernel: torch.Tensor, dilation: int) -> torch.Tensor:
    """Spread a ``(..., kh, kw)`` kernel with zeros so a dilation-1 conv equals the dilated one.

    A ``k`` tap kernel at dilation ``d`` (padding ``p``) equals a ``(k - 1) * d + 1`` kernel at dilation 1
    with the same padding. Differentiable (autograd flows back into ``kernel``).
    """
    if dilation == 1:
        return kernel
    # Shape arithmetic written so TorchScript compiles it (RepNeXt computes this in its forward).
    kh, kw = kernel.shape[-2], kernel.shape[-1]
    shape = list(kernel.shape[:-2]) + [(kh - 1) * dilation + 1, (kw - 1) * dilation + 1]
    out = kernel.new_zeros(shape)
    out[..., ::dilation, ::dilation] = kernel
    return out


def serial_kernel(row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
    """Merge a bias-free depthwise ``1 x k`` conv followed by a depthwise ``k' x 1`` conv into ``k' x k``.

    ``row`` is ``(C, 1, 1, k)``, ``col`` is ``(C, 1, k', 1)``; the product is exact including borders and
    strides (``(1, s)`` then ``(s, 1)`` equals ``(s, s)``) because the zero rows the second conv pads
    with are what a bias-free first conv would output there. Differentiable.
    """
    if row.shape[-2] != 1 or col.shape[-1] != 1:
        raise ValueError(f'expected a (C, 1, 1, k) row and a (C, 1, k, 1) column kernel, '
                         f'got {row.shape} and {col.shape}')
    return col * row


# ---------------------------------------------------------------------------------- module contract
def require_batchnorm(norm: nn.Module, where: str) -> nn.modules.batchnorm._BatchNorm:
    """``norm`` if it can be folded into a conv (BN, SyncBN), else a ValueError saying what to do."""
    if not isinstance(norm, nn.modules.batchnorm._BatchNorm):
        raise ValueError(
            f'cannot merge {where}: it is normalised by {type(norm).__name__}, which has no running '
            'statistics. Re-parameterisation is exact only for BatchNorm-like norms (BN, SyncBN); '
            'build the model with norm_cfg=dict(type="BN") (or SyncBN) to deploy it.')
    return norm


def reparameterize(model: nn.Module, **options: object) -> List[str]:
    """Switch every re-parameterisable part of ``model`` to its deploy form, in place.

    The one walker of mmlk (backbones, the checkpoint loader and the tools use it). The contract of a
    mergeable module: ``equivalent_kernel_bias()`` gives the single conv (or linear) it equals in eval
    mode, and ``switch_to_deploy(**options)`` merges it. ``switch_to_deploy`` works in place and returns
    None, except for modules whose deploy form is a different module under the same name (a ConvNorm
    becomes a plain biased ``nn.Conv2d``, as in the released key layouts): they return that module and
    the walker puts it in their place. A module with ``switch_to_deploy`` owns its whole subtree, so the
    walker does not descend into it.

    Args:
        model: Any module: a backbone, a classifier, a segmentor, a detector, a block.
        **options: Passed to the modules whose ``deploy_options`` (a class attribute) name them, e.g.
            ``fuse_bn=True`` for RepLKNet, ``single_branch=True`` for RepNeXt. None means the module's
            own default. An option no module accepts raises ValueError.

    Returns:
        Qualified names of the modules switched ('' for ``model`` itself).
    """
    switched: List[str] = []
    accepted: set = set()

    def switch(module: nn.Module) -> Optional[nn.Module]:
        names = getattr(module, 'deploy_options', ())
        accepted.update(names)
        kwargs = {k: v for k, v in options.items() if k in names}
        return module.switch_to_deploy(**kwargs)

    def visit(parent: nn.Module, prefix: str) -> None:
        for name, child in list(parent.named_children()):
            qualified = prefix + name
            if callable(getattr(child, 'switch_to_deploy', None)):
                replacement = switch(child)
                if replacement is not None:
                    setattr(parent, name, replacement)
                switched.append(qualified)
            else:
                visit(child, qualified + '.')

    if callable(getattr(model, 'switch_to_deploy', None)):
        if switch(model) is not None:
            raise TypeError(f'{type(model).__name__} is replaced by another module when merged; '
                            'reparameterize its parent instead')
        switched.append('')
    else:
        visit(model, '')
    unused = sorted(k for k, v in options.items() if v is not None and k not in accepted)
    if unused:
        raise ValueError(f'no module of {type(model).__name__} takes the deploy options {unused}')
    return switched
