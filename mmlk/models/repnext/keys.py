"""RepNeXt's state-dict forensics: how the family recognises, names and explains its own checkpoints.

A mixin of :class:`~mmlk.models.repnext.RepNeXt` (class attributes ``family``, ``arch_settings`` and
``num_stages`` come from it), kept apart from the layers so ``model.py`` holds the model only. The
checkpoint file layer reaches these methods through the codec RepNeXt registers
(:func:`mmlk.models.weights.keys.register_family`).
"""
import re
from typing import Dict, List, Optional, Sequence, Tuple

from ..base import blocks_per_stage


class RepNeXtKeys:
    """``owns_keys`` / ``form_of`` / ``describe_shapes`` / ``state_dict_hints`` of RepNeXt (see RepBackbone)."""

    def describe_extras(self) -> List[str]:
        return ['block norms kept'] if self.deploy and not self.fold_block_norm else []

    @classmethod
    def owns_keys(cls, keys: Sequence[str]) -> bool:
        return any('.token_mixer.' in k or k.startswith('stem.stem.') for k in keys)

    @classmethod
    def form_of(cls, keys: Sequence[str]) -> Optional[str]:
        # ConvNorms (``*.conv.weight`` + ``*.norm.*``) mark the training form of the single-branch "E"
        # variants too, whose plain depthwise convs look like merged ones
        if any('.conv_3_3.' in k or '.conv_7_7.' in k or k.endswith('channel_mixer.0.conv.weight') for k in keys):
            return 'train'
        if any(re.search(r'token_mixer\.conv(_[sm])?\.weight$', k) for k in keys):
            return 'merged'
        return None

    @classmethod
    def describe_shapes(cls, shapes: Dict[str, Tuple[int, ...]]) -> dict:
        """See :meth:`mmlk.models.base.RepBackbone.describe_shapes`; adds ``norms_kept`` (a merged file with block norms)."""
        blocks = {i: n for i, n in blocks_per_stage(list(shapes)).items() if n}
        depths, channels = [], []
        for i in sorted(blocks):
            depths.append(blocks[i])
            out = (shapes.get(f'stages.{i}.blocks.0.channel_mixer.2.conv.weight')
                   or shapes.get(f'stages.{i}.blocks.0.channel_mixer.2.weight'))
            channels.append(out[0] if out else None)
        # The "E" variants mix with one conv per block (M0 and M0E share widths and depths); a multi-branch
        # model merged into the single-branch form has the same structure and is named E as well.
        plain = any(k.endswith('token_mixer.conv.weight') for k in shapes)
        arch_name = next((name for name, ref in cls.arch_settings.items()
                          if tuple(ref['embed_dims']) == tuple(channels) and tuple(ref['depths']) == tuple(depths)
                          and (ref.get('token_mixer') == 'single') == plain), None)
        variant = arch_name.upper() if arch_name else None
        form = cls.form_of(list(shapes))
        norms_kept = any(re.search(r'stages\.\d+\.blocks\.\d+\.norm\.', k) for k in shapes)
        complete = len(depths) == cls.num_stages and None not in channels
        return dict(family=cls.family, form=form, arch_name=arch_name, variant=variant,
                    arch=dict(embed_dims=channels, depths=depths) if complete else None,
                    channels=tuple(channels), depths=tuple(depths), norms_kept=norms_kept,
                    extras=['block norms kept'] if form == 'merged' and norms_kept else [],
                    text=f'RepNeXt{"-" + variant if variant else ""} (channels {tuple(channels)}, '
                         f'depths {tuple(depths)})')

    def state_dict_hints(self, info: dict) -> List[str]:
        if info['form'] == 'train' and self.deploy:
            return ['Load it into a training-form model (deploy=False) and call switch_to_deploy(), or load it '
                    'with mmlk.models.weights.load_pretrained, which merges on the fly.']
        if info['form'] == 'merged' and not self.deploy:
            return ['It holds merged weights: build the model with deploy=True'
                    + (', fold_block_norm=False' if info['norms_kept'] else '') + '.']
        if info['form'] == 'merged' and info['norms_kept'] and self.fold_block_norm:
            return ['Its block norms are kept: build the model with deploy=True, fold_block_norm=False.']
        return []
