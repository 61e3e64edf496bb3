"""UniRepLKNet's state-dict forensics: how the family recognises, names and explains its own checkpoints.

A mixin of :class:`~mmlk.models.unireplknet.UniRepLKNet` (its class attributes ``family``, ``arch_settings`` and
``num_stages`` come from it), kept apart from the layers so ``model.py`` holds the model only. The weights layer
reaches these methods through the codec the family registers (:func:`mmlk.models.weights.keys.register_family`);
their contract is :class:`~mmlk.models.base.RepBackbone`'s.
"""
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = ['UniRepLKNetKeys']


class UniRepLKNetKeys:
    """``owns_keys`` / ``form_of`` / ``describe_shapes`` / ``state_dict_hints`` of UniRepLKNet (see RepBackbone).

    Key layout: AILab-CVC/UniRepLKNet's (``downsample_layers.i``, ``stages.i.j`` blocks, ``norm0..3``, ``norm``,
    ``head``); training-form blocks have ``origin_bn`` / ``dil_conv_k*_*`` branches, BN after ``pwconv2`` and
    GRN ``beta``, merged ones a biased ``pwconv2.0``.
    """

    def describe_extras(self) -> List[str]:
        return [f'{self.num_classes}-class head' if self.num_classes else 'no head']

    @classmethod
    def owns_keys(cls, keys: Sequence[str]) -> bool:
        return any(k.startswith('downsample_layers.') or '.se.down.' in k for k in keys)

    @classmethod
    def form_of(cls, keys: Sequence[str]) -> Optional[str]:
        if any(re.search(r'\.(origin_bn|dil_conv_k\d+_\d+|pwconv2\.2)\.|\.act\.1\.beta$', k) for k in keys):
            return 'train'
        if any(k.endswith('pwconv2.0.bias') for k in keys):
            return 'merged'
        return None

    @classmethod
    def describe_shapes(cls, shapes: Dict[str, Tuple[int, ...]]) -> dict:
        """See :meth:`mmlk.models.RepBackbone.describe_shapes`; adds ``num_classes`` and ``out_norms`` (stages with ``norm{i}``)."""
        depths: Dict[int, int] = {}
        for k in shapes:
            m = re.match(r'^stages\.(\d+)\.(\d+)\.', k)
            if m:
                depths[int(m.group(1))] = max(depths.get(int(m.group(1)), 0), int(m.group(2)) + 1)
        stage_ids = sorted(depths)
        dims, kernels = [], []
        for i in stage_ids:
            pw = shapes.get(f'stages.{i}.0.pwconv1.1.weight')
            dims.append(pw[1] if pw else None)
            stage_kernels = []
            for j in range(depths[i]):
                dw = (shapes.get(f'stages.{i}.{j}.dwconv.lk_origin.weight') or shapes.get(f'stages.{i}.{j}.dwconv.weight'))
                stage_kernels.append(dw[-1] if dw else 0)
            kernels.append(stage_kernels)
        num_classes = shapes['head.weight'][0] if 'head.weight' in shapes else 0
        out_norms = tuple(i for i in range(cls.num_stages) if f'norm{i}.weight' in shapes)
        info = dict(family=cls.family, form=cls.form_of(list(shapes)), arch=None, arch_name=None, variant=None,
                    channels=tuple(dims), depths=tuple(depths[i] for i in stage_ids), num_classes=num_classes,
                    out_norms=out_norms, extras=[f'{num_classes}-class head' if num_classes else 'no head'])
        complete = stage_ids == list(range(cls.num_stages)) and None not in dims
        if complete:
            arch = dict(depths=[depths[i] for i in stage_ids], dims=dims, kernel_sizes=kernels)
            info['arch'] = arch
            info['arch_name'] = next((n for n, ref in cls.arch_settings.items() if ref == arch), None)
        else:
            info['arch_name'] = next((n for n, ref in cls.arch_settings.items()
                                      if tuple(ref['dims']) == info['channels']
                                      and tuple(ref['depths']) == info['depths']), None)
        info['variant'] = info['arch_name'].upper() if info['arch_name'] else None
        info['text'] = (f'UniRepLKNet{"-" + info["variant"] if info["variant"] else ""} (dims {info["channels"]}, '
                        f'depths {info["depths"]})')
        return info

    def state_dict_hints(self, info: dict) -> List[str]:
        if info['form'] == 'train' and self.deploy:
            return ['Load it into a training-form model (deploy=False) and call switch_to_deploy(), or load it with '
                    'mmlk.models.weights.load_pretrained, which merges on the fly.']
        if info['form'] == 'merged' and not self.deploy:
            return ['It holds merged weights: build the model with deploy=True.']
        return []

    @classmethod
    def kwargs_for_state_dict(cls, info: dict) -> Dict[str, Any]:
        return dict(arch=info['arch_name'] or info['arch'], num_classes=info['num_classes'],
                    out_indices=info['out_norms'])
