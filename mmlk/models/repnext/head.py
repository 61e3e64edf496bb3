"""RepNeXt's two-head classifier (``head`` and ``head_dist``), usable from mmpretrain and timm.

RepNeXt (arXiv 2406.16004) trains DeiT-style with a distillation head: two BatchNorm1d + Linear heads on
the pooled features, whose mean is the prediction. This module keeps that layout (keys ``head.norm.*``,
``head.linear.*``, ``head_dist.*``) so the released weights load under an mmpretrain ``ImageClassifier``
(``head.head.*`` there) and under timm. mmpretrain is imported lazily inside :meth:`RepNeXtClsHead.loss`
and :meth:`RepNeXtClsHead.predict`, so ``import mmlk`` and timm users never need it.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_

from mmlk.registry import MODELS
from ..base import record_build_kwargs
from ..utils.reparam import fold_bn_into_next

_Feats = Union[torch.Tensor, Sequence[torch.Tensor]]
#: eps of both heads' BatchNorm1d (upstream's default), also used when merging a training-form file on load.
BN_EPS = 1e-5


class NormLinear(nn.Sequential):
    """BatchNorm1d then Linear (children ``norm``, ``linear``), the linear initialised trunc-normal(0.02)."""

    def __init__(self, in_channels: int, out_channels: int, std: float = 0.02) -> None:
        super().__init__()
        self.add_module('norm', nn.BatchNorm1d(in_channels, eps=BN_EPS))
        self.add_module('linear', nn.Linear(in_channels, out_channels))
        trunc_normal_(self.linear.weight, std=std)
        nn.init.zeros_(self.linear.bias)

    def equivalent_kernel_bias(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(w, b)`` of the single Linear equal to this module in eval mode."""
        return fold_bn_into_next(self.linear.weight, self.linear.bias, self.norm)


@MODELS.register_module()
class RepNeXtClsHead(BaseModule):
    """RepNeXt classifier: mean of a classification and a distillation head (arXiv 2406.16004).

    Works as an mmpretrain ``ImageClassifier`` head (``loss``/``predict``) after a
    ``GlobalAveragePooling`` neck, and as a plain module on pooled ``(N, C)`` features.

    Args:
        num_classes: Number of classes.
        in_channels: Channels of the pooled feature.
        distillation: In training mode, ``forward`` returns the ``(head, head_dist)`` pair for an external
            DeiT-style distillation loss. :meth:`loss` has no teacher and always trains the mean of both
            heads, like upstream's non-distilled recipe. Defaults to False.
        loss: mmpretrain loss config. Defaults to ``dict(type='CrossEntropyLoss', loss_weight=1.0)``.
        topk: Top-k accuracies reported by :meth:`loss` when ``cal_acc``. Defaults to ``(1, )``.
        cal_acc: Report training accuracy. Defaults to False.
        deploy: Build the merged form: one Linear stored as this module's own ``weight``/``bias``
            (keys ``head.weight``, ``head.bias`` in a classifier, as in upstream fused models).
        init_cfg: mmengine init config. Defaults to None (upstream initialisation).
    """

    # TorchScript compiles every property, and mmengine's BaseModule.is_init setter assigns values it cannot
    # type; the property is bookkeeping of init_weights, never used by forward.
    __jit_unused_properties__ = ['is_init']

    @record_build_kwargs  # build_kwargs: the constructor arguments (the loader builds twins from them)
    def __init__(self, num_classes: int, in_channels: int, distillation: bool = False,
                 loss: Optional[Dict] = None, topk: Union[int, Sequence[int]] = (1, ), cal_acc: bool = False,
                 deploy: bool = False, init_cfg: Optional[Dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_classes <= 0:
            raise ValueError(f'num_classes must be positive, got {num_classes}')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.distillation = distillation
        self.loss_cfg = dict(loss or dict(type='CrossEntropyLoss', loss_weight=1.0))
        self.topk = (topk, ) if isinstance(topk, int) else tuple(topk)
        self.cal_acc = cal_acc
        self.deploy = deploy
        self._loss_module: Optional[nn.Module] = None
        if deploy:
            self.weight = nn.Parameter(torch.empty(num_classes, in_channels))
            self.bias = nn.Parameter(torch.zeros(num_classes))
            trunc_normal_(self.weight, std=0.02)
        else:
            self.head = NormLinear(in_channels, num_classes)
            self.head_dist = NormLinear(in_channels, num_classes)
        self._register_load_state_dict_pre_hook(self._merge_training_form_keys)

    def _merge_training_form_keys(self, state_dict: Dict[str, torch.Tensor], prefix: str, *args) -> None:
        """Load a training-form head (``head.*``, ``head_dist.*``) into the merged form by merging it.

        Host tools that re-parameterise only the backbone (mmpretrain's ``reparameterize_model.py``)
        leave the two heads unmerged; mmengine's non-strict load would otherwise keep this head's random
        initialisation and only warn. Merging on load gives exactly :meth:`switch_to_deploy`'s result.
        """
        if not self.deploy or prefix + 'weight' in state_dict:
            return
        fields = ('norm.weight', 'norm.bias', 'norm.running_mean', 'norm.running_var', 'linear.weight',
                  'linear.bias')
        keys = [f'{prefix}{head}.{field}' for head in ('head', 'head_dist') for field in fields]
        present = [k for k in keys if k in state_dict]
        if not present:
            return  # nothing of this head in the file: the loader reports the missing keys as usual
        if len(present) != len(keys):
            missing = sorted(set(keys) - set(present))
            raise KeyError(f'the checkpoint holds part of a training-form RepNeXt head ({prefix}head*) but '
                           f'lacks {missing}; it cannot be merged into the deploy head. Convert the complete '
                           'training checkpoint with tools/model_converters/reparameterize.py --config.')
        merged = []
        for head in ('head', 'head_dist'):
            get = lambda field: state_dict[f'{prefix}{head}.{field}']  # noqa: E731
            scale = get('norm.weight') / torch.sqrt(get('norm.running_var') + BN_EPS)
            shift = get('norm.bias') - get('norm.running_mean') * scale
            weight = get('linear.weight') * scale[None, :]
            merged.append((weight, get('linear.bias') + get('linear.weight') @ shift))
        state_dict[prefix + 'weight'] = (merged[0][0] + merged[1][0]) / 2
        state_dict[prefix + 'bias'] = (merged[0][1] + merged[1][1]) / 2
        for key in list(state_dict):
            if key.startswith((prefix + 'head.', prefix + 'head_dist.')):
                del state_dict[key]

    def pre_logits(self, feats: _Feats) -> torch.Tensor:
        """The last pooled feature (necks hand over a tuple, timm a tensor)."""
        return feats[-1] if isinstance(feats, (tuple, list)) else feats

    # ``feats`` is deliberately not annotated: TorchScript reads annotations even of branches it drops,
    # and cannot express "a tensor or a sequence of tensors". It assumes a Tensor, the timm case.
    def forward(self, feats):  # -> Tensor, or (head, head_dist) logits in distillation training
        """Mean logits of both heads (or the merged Linear); ``feats`` is pooled ``(N, C)`` or a tuple of them."""
        if torch.jit.is_scripting():
            # One return type for TorchScript: scripted models are for inference, where both forms
            # return the mean of the two heads.
            return self._mean_logits(feats)
        else:
            x = self.pre_logits(feats)
            if self.training and self.distillation and not self.deploy:
                return self.head(x), self.head_dist(x)
            return self._mean_logits(x)

    def _mean_logits(self, x: torch.Tensor) -> torch.Tensor:
        # hasattr in an if/else: TorchScript resolves it statically and compiles only the existing form.
        if hasattr(self, 'weight'):
            return F.linear(x, self.weight, self.bias)
        else:
            return (self.head(x) + self.head_dist(x)) / 2

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Merge both heads (BN folded) into one Linear; idempotent."""
        if self.deploy:
            return
        w1, b1 = self.head.equivalent_kernel_bias()
        w2, b2 = self.head_dist.equivalent_kernel_bias()
        del self.head, self.head_dist
        self.weight = nn.Parameter((w1 + w2) / 2)
        self.bias = nn.Parameter((b1 + b2) / 2)
        self.deploy = True
        self.build_kwargs['deploy'] = True

    # ----- mmpretrain interface (lazy imports keep ``import mmlk`` free of mmpretrain) -----
    def _scores(self, feats: _Feats) -> torch.Tensor:
        out = self(feats)
        return (out[0] + out[1]) / 2 if isinstance(out, tuple) else out

    def loss(self, feats: _Feats, data_samples: List, **kwargs) -> Dict[str, torch.Tensor]:
        """Classification loss on the mean logits (mmpretrain ``ClsHead`` contract)."""
        from mmpretrain.evaluation.metrics import Accuracy
        from mmpretrain.registry import MODELS as PRETRAIN_MODELS
        if self._loss_module is None:
            # built at first use, so under whatever default scope the caller left (a process that also ran mmdet
            # has 'mmdet' there, where 'LabelSmoothLoss' does not exist): the loss is mmpretrain's
            from mmengine.registry import DefaultScope
            with DefaultScope.overwrite_default_scope('mmpretrain'):
                self._loss_module = PRETRAIN_MODELS.build(self.loss_cfg)
        cls_score = self._scores(feats)
        if 'gt_score' in data_samples[0]:  # mixup / cutmix give soft targets
            target = torch.stack([s.gt_score for s in data_samples])
        else:
            target = torch.cat([s.gt_label for s in data_samples])
        losses = dict(loss=self._loss_module(cls_score, target, avg_factor=cls_score.size(0), **kwargs))
        if self.cal_acc:
            if target.dim() != 1:
                raise RuntimeError('cal_acc needs hard labels; switch it off when training with mixup/cutmix')
            acc = Accuracy.calculate(cls_score, target, topk=self.topk)
            losses.update({f'accuracy_top-{k}': a for k, a in zip(self.topk, acc)})
        return losses

    def predict(self, feats: _Feats, data_samples: Optional[List] = None) -> List:
        """Softmax scores and labels as mmpretrain ``DataSample`` objects."""
        from mmpretrain.structures import DataSample
        scores = F.softmax(self._scores(feats), dim=1)
        labels = scores.argmax(dim=1, keepdim=True).detach()
        if data_samples is None:
            data_samples = [None] * scores.size(0)
        out = []
        for sample, score, label in zip(data_samples, scores, labels):
            sample = DataSample() if sample is None else sample
            sample.set_pred_score(score).set_pred_label(label)
            out.append(sample)
        return out
