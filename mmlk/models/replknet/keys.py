"""RepLKNet's state-dict forensics: how the family recognises, names and explains its own checkpoints.

A mixin of :class:`~mmlk.models.replknet.RepLKNet` (its class attributes ``family``, ``arch_settings`` and
``num_stages`` come from it), kept apart from the layers so ``model.py`` holds the model only. The weights layer
reaches these methods through the codec the family registers (:func:`mmlk.models.weights.keys.register_family`);
their contract is :class:`~mmlk.models.base.RepBackbone`'s.
"""
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..base import blocks_per_stage

__all__ = ['RepLKNetKeys']


class RepLKNetKeys:
    """``owns_keys`` / ``form_of`` / ``describe_shapes`` / ``state_dict_hints`` of RepLKNet (see RepBackbone).

    Key layout: RepLKNet-pytorch's (``stem.*``, ``stages.i.blocks.j`` alternating ``RepLKBlock`` with
    ``large_kernel.lkb_origin`` / ``small_conv`` [train] or ``lkb_reparam`` [merged] and ``ConvFFN``,
    ``transitions.i``, ``norm``, ``head``); a fused file also has biases on the stem conv.
    """

    def describe_extras(self) -> List[str]:
        extras = [f'{self.num_classes}-class head' if self.num_classes else 'no head']
        return extras + (['intermediate norms'] if self.norm_intermediate_features else [])

    @classmethod
    def owns_keys(cls, keys: Sequence[str]) -> bool:
        return any('.large_kernel.' in k or '.prelkb_bn.' in k for k in keys)

    @classmethod
    def form_of(cls, keys: Sequence[str]) -> Optional[str]:
        if any('.lkb_origin.' in k for k in keys):
            return 'train'
        if any('.lkb_reparam.' in k for k in keys):
            return 'fused' if 'stem.0.conv.bias' in keys else 'merged'
        return None

    @classmethod
    def describe_shapes(cls, shapes: Dict[str, Tuple[int, ...]]) -> dict:
        """See :meth:`mmlk.models.RepBackbone.describe_shapes`; adds ``num_classes`` and ``norm_intermediate_features``."""
        blocks = {i: n for i, n in blocks_per_stage(list(shapes)).items() if n}
        layers, channels, kernels = [], [], []
        small, dw_ratio, ffn_ratio = None, None, None
        for i in sorted(blocks):
            layers.append(blocks[i] // 2)
            lk = shapes.get(f'stages.{i}.blocks.0.large_kernel.lkb_origin.conv.weight',
                            shapes.get(f'stages.{i}.blocks.0.large_kernel.lkb_reparam.weight'))
            pw1 = shapes.get(f'stages.{i}.blocks.0.pw1.conv.weight')
            ffn = shapes.get(f'stages.{i}.blocks.1.pw1.conv.weight')
            kernels.append(lk[-1] if lk else None)
            channels.append(pw1[1] if pw1 else None)
            if pw1 and ffn:
                dw_ratio, ffn_ratio = pw1[0] / pw1[1], ffn[0] / ffn[1]
            sc = shapes.get(f'stages.{i}.blocks.0.large_kernel.small_conv.conv.weight')
            if sc:
                small = sc[-1]
        form = cls.form_of(list(shapes))
        info = dict(family=cls.family, form=form, arch=None, arch_name=None, variant=None,
                    channels=tuple(channels), depths=tuple(layers),
                    num_classes=shapes['head.weight'][0] if 'head.weight' in shapes else 0,
                    norm_intermediate_features=any(re.match(r'stages\.\d\.norm\.', k) for k in shapes))
        info['extras'] = [f'{info["num_classes"]}-class head' if info['num_classes'] else 'no head'] + (
            ['intermediate norms'] if info['norm_intermediate_features'] else [])
        if len(layers) == cls.num_stages and None not in channels + kernels and dw_ratio is not None:
            number = lambda v: int(v) if float(v).is_integer() else float(v)  # noqa: E731
            arch = dict(large_kernel_sizes=kernels, layers=layers, channels=channels, small_kernel=small,
                        dw_ratio=number(dw_ratio), ffn_ratio=number(ffn_ratio))
            for name, ref in cls.arch_settings.items():
                # The merged form does not record the small kernel: take the published one.
                if form != 'train' and {**ref, 'small_kernel': None} == {**arch, 'small_kernel': None}:
                    arch['small_kernel'] = ref['small_kernel']
                if ref == arch:
                    info['arch_name'] = info['variant'] = name
            info['arch'] = arch
        else:
            # a partial state dict: name the variant from what is there
            info['variant'] = next((name for name, ref in cls.arch_settings.items()
                                    if tuple(ref['channels']) == tuple(channels)
                                    and tuple(ref['layers']) == tuple(layers)
                                    and tuple(ref['large_kernel_sizes']) == tuple(kernels)), None)
        info['text'] = (f'RepLKNet{"-" + info["variant"] if info["variant"] else ""} (channels {tuple(channels)}, '
                        f'layers {tuple(layers)}, kernels {tuple(kernels)})')
        return info

    def state_dict_hints(self, info: dict) -> List[str]:
        if info['form'] == 'train' and self.deploy:
            return ['Load it into a training-form model (deploy=False) and call switch_to_deploy(), or convert it '
                    'with tools/model_converters/reparameterize.py.']
        if info['form'] in ('merged', 'fused') and not self.deploy:
            return ['It holds merged weights: build the model with deploy=True'
                    + (', fuse_bn=True' if info['form'] == 'fused' else '') + '.']
        return []

    @classmethod
    def kwargs_for_state_dict(cls, info: dict) -> Dict[str, Any]:
        kwargs = dict(arch=info['arch_name'] or info['arch'], num_classes=info['num_classes'],
                      norm_intermediate_features=info['norm_intermediate_features'])
        if info['num_classes']:
            kwargs['out_indices'] = ()
        return kwargs
