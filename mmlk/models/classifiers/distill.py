"""DeiT-style teacher-student training for mmpretrain classifiers with a distillation head.

RepNeXt's headline ImageNet numbers (74.2 ... 83.3 top-1, arXiv 2406.16004) are distilled as in DeiT
(Touvron et al., "Training data-efficient image transformers & distillation through attention", ICML 2021):
the student's ``head`` learns the labels, its ``head_dist`` learns a frozen teacher's predictions
(RegNetY-16GF, ``regnety_160``), hard distillation, ``alpha = 0.5``, ``tau = 1.0``. mmpretrain has no
teacher-student classifier; :class:`DistillImageClassifier` adds one:

* the teacher is any mmpretrain model (``ImageClassifier``, ``TimmClassifier``, an mmlk classifier) or
  module, built from its config and loaded from ``teacher_checkpoint`` in :meth:`init_weights`, through
  mmlk's strict loader (mmlk backbones, every released RepNeXt / RepLKNet format) or as a plain state dict
  (read safely, unwrapped from ``model`` / ``state_dict``, loaded strictly);
* it is kept OUT of the module tree: it never appears in ``state_dict()`` (so checkpoints hold only the
  student), in ``parameters()`` (so optimisers, DDP's parameter sync and gradient clipping never see it),
  and EMA copies share it instead of duplicating it; ``.to()`` / ``.cuda()`` still move it with the student;
* it always runs in eval mode under ``torch.no_grad()``, whatever ``train()`` is called with.
"""
import copy
from typing import Any, Dict, List, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.registry import MODELS as PRETRAIN_MODELS
from mmpretrain.structures import DataSample

from mmlk.registry import MODELS

DISTILLATION_TYPES = ('hard', 'soft', 'none')
TEACHER_LOADERS = ('auto', 'mmlk', 'state_dict')


class _FrozenRef:
    """Holds the teacher without registering it as a sub-module.

    Deep copies (mmengine's EMA model is a deep copy of the student wrapper) share the same teacher: it is
    never updated, so one copy is enough (a RegNetY-16GF teacher is 84M parameters).
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __deepcopy__(self, memo: Dict) -> '_FrozenRef':
        return self


@MODELS.register_module()
class DistillImageClassifier(ImageClassifier):
    """mmpretrain ``ImageClassifier`` trained against a frozen teacher (DeiT distillation).

    The student is the usual backbone / neck / head; the head must have two outputs in training
    (a ``distillation`` attribute that makes ``forward`` return ``(logits, logits_dist)``, as
    :class:`mmlk.models.repnext.RepNeXtClsHead` does). The training loss is
    ``(1 - alpha) * cls_loss(logits, labels) + alpha * distill_loss(logits_dist, teacher)`` with

    * ``'hard'``: cross-entropy against the teacher's argmax;
    * ``'soft'``: ``KL(softmax(t / tau) || softmax(s / tau)) * tau ** 2``, summed and divided by the number of
      logits (DeiT's normalisation);
    * ``'none'``: no teacher, the head's own loss (RepNeXt's "without distillation" recipe).

    Prediction is the head's (the mean of both heads for RepNeXt).

    Args:
        backbone: Student backbone config.
        teacher: Teacher model config (built in mmpretrain's registry scope, so ``TimmClassifier``,
            ``ImageClassifier`` and ``mmlk.*`` all work) or an ``nn.Module``. Required unless
            ``distillation_type='none'``.
        neck: Student neck config. Defaults to None.
        head: Student head config (two-head, see above).
        teacher_checkpoint: Weights of the teacher: a path, URL or ``checkpoints.yaml`` name. Loaded in
            :meth:`init_weights`. None keeps the teacher as built (e.g. a teacher config whose own
            ``init_cfg`` loads it).
        teacher_loader: ``'mmlk'`` (:func:`mmlk.models.weights.load_pretrained`, strict, every released
            RepNeXt / RepLKNet format), ``'state_dict'`` (safe read, unwrap ``model`` / ``state_dict`` /
            ``module.``, strict ``load_state_dict``, e.g. DeiT's ``regnety_160-a5fe301d.pth`` into a
            ``TimmClassifier``) or ``'auto'`` (``'mmlk'`` when the teacher contains an mmlk backbone).
        distillation_type: ``'hard'``, ``'soft'`` or ``'none'``. Defaults to ``'hard'`` (RepNeXt).
        alpha: Weight of the distillation loss. Defaults to 0.5.
        tau: Temperature of soft distillation. Defaults to 1.0.
        cls_loss: Loss of the class head; defaults to the head's ``loss_cfg`` (e.g. label smoothing),
            else cross-entropy. It must accept soft targets when mixup / cutmix is used.
        train_cfg, data_preprocessor, init_cfg, pretrained: As for ``ImageClassifier``.
    """

    def __init__(self,
                 backbone: Dict,
                 teacher: Optional[Union[Dict, nn.Module]] = None,
                 neck: Optional[Dict] = None,
                 head: Optional[Dict] = None,
                 teacher_checkpoint: Optional[str] = None,
                 teacher_loader: str = 'auto',
                 distillation_type: str = 'hard',
                 alpha: float = 0.5,
                 tau: float = 1.0,
                 cls_loss: Optional[Dict] = None,
                 pretrained: Optional[str] = None,
                 train_cfg: Optional[Dict] = None,
                 data_preprocessor: Optional[Dict] = None,
                 init_cfg: Optional[Dict] = None) -> None:
        if distillation_type not in DISTILLATION_TYPES:
            raise ValueError(f'distillation_type must be one of {DISTILLATION_TYPES}, got {distillation_type!r}')
        if not 0 <= alpha <= 1:
            raise ValueError(f'alpha weighs the distillation loss against the class loss and must be in [0, 1], '
                             f'got {alpha}')
        if tau <= 0:
            raise ValueError(f'tau (the soft-distillation temperature) must be positive, got {tau}')
        if teacher_loader not in TEACHER_LOADERS:
            raise ValueError(f'teacher_loader must be one of {TEACHER_LOADERS}, got {teacher_loader!r}')
        if distillation_type != 'none' and teacher is None:
            raise ValueError(f'{distillation_type} distillation needs a teacher: pass teacher=dict(type=...) '
                             "(e.g. type='TimmClassifier', model_name='regnety_160') or use "
                             "distillation_type='none'")
        super().__init__(backbone, neck=neck, head=head, pretrained=pretrained, train_cfg=train_cfg,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if head is None or not hasattr(self.head, 'distillation'):
            raise ValueError('DistillImageClassifier needs a two-head student head with a `distillation` switch, '
                             "e.g. head=dict(type='mmlk.RepNeXtClsHead', ...); "
                             f'got {type(self.head).__name__}')
        self.distillation_type = distillation_type
        self.alpha = float(alpha)
        self.tau = float(tau)
        self.teacher_checkpoint = teacher_checkpoint
        self.teacher_loader = teacher_loader
        # the head returns (logits, logits_dist) in training: both are needed separately
        self.head.distillation = distillation_type != 'none'
        cfg = cls_loss or getattr(self.head, 'loss_cfg', None) or dict(type='CrossEntropyLoss', loss_weight=1.0)
        self.cls_loss = PRETRAIN_MODELS.build(copy.deepcopy(cfg))
        self._teacher: Optional[_FrozenRef] = None
        if distillation_type != 'none':
            module = teacher if isinstance(teacher, nn.Module) else PRETRAIN_MODELS.build(copy.deepcopy(teacher))
            self._teacher = _FrozenRef(self._freeze(module))

    # ------------------------------------------------------------------ the frozen teacher
    @property
    def teacher(self) -> Optional[nn.Module]:
        """The teacher module (not a sub-module of this model), or None without distillation."""
        return None if self._teacher is None else self._teacher.module

    @staticmethod
    def _freeze(module: nn.Module) -> nn.Module:
        for p in module.parameters():
            p.requires_grad_(False)
        return module.eval()

    def _apply(self, fn: Any, *args, **kwargs) -> 'DistillImageClassifier':
        # .to() / .cuda() / .half() reach only registered modules: move the teacher along explicitly
        super()._apply(fn, *args, **kwargs)
        if getattr(self, '_teacher', None) is not None:
            self._teacher.module._apply(fn, *args, **kwargs)
        return self

    def train(self, mode: bool = True) -> 'DistillImageClassifier':
        super().train(mode)
        if getattr(self, '_teacher', None) is not None:
            self._teacher.module.eval()  # BN statistics and dropout of the teacher never change
        return self

    def init_weights(self) -> None:
        """Initialise the student (mmengine's way), then load the teacher's weights if given."""
        super().init_weights()
        if self._teacher is None or self.teacher_checkpoint is None:
            return
        teacher = self._teacher.module
        loader = self.teacher_loader
        if loader == 'auto':
            from mmlk.models import RepBackbone
            loader = 'mmlk' if any(isinstance(m, RepBackbone) for m in teacher.modules()) else 'state_dict'
        if loader == 'mmlk':
            from mmlk.models.weights import load_pretrained
            load_pretrained(teacher, self.teacher_checkpoint)
        else:
            self._load_teacher_state_dict(teacher, self.teacher_checkpoint)
        self._freeze(teacher)

    @staticmethod
    def _load_teacher_state_dict(teacher: nn.Module, checkpoint: str) -> None:
        from mmlk.checkpoint.containers import unwrap_state_dict
        from mmlk.checkpoint.resolve import resolve_checkpoint
        from mmlk.checkpoint.reader import read_checkpoint
        path, _ = resolve_checkpoint(checkpoint)
        obj, _ = read_checkpoint(path)  # weights_only: never runs code from the file
        state, _, _ = unwrap_state_dict(obj)
        try:
            teacher.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ValueError(f'the teacher checkpoint {checkpoint} does not match the teacher model; check the '
                             f"teacher config (e.g. model_name) or use teacher_loader='mmlk' for mmlk models. {e}"
                             ) from e

    @torch.no_grad()
    def teacher_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """The frozen teacher's class logits (a two-head teacher gives the mean of its heads)."""
        teacher = self._teacher.module
        if teacher.training:  # someone called teacher.train() directly
            teacher.eval()
        try:
            out = teacher(inputs, mode='tensor')
        except TypeError:  # a plain nn.Module (timm model, torchvision ...)
            out = teacher(inputs)
        if isinstance(out, (tuple, list)):
            out = out[-1] if len(out) == 1 else sum(out) / len(out)
        return out.detach()

    # ------------------------------------------------------------------ losses
    def distillation_loss(self, logits_dist: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """DeiT's hard or soft distillation loss of the distillation head against the teacher."""
        if self.distillation_type == 'hard':
            return F.cross_entropy(logits_dist, teacher_logits.argmax(dim=1))
        t = self.tau
        # float32: a summed KL over N x classes terms loses too much in half precision (AMP)
        return F.kl_div(F.log_softmax(logits_dist.float() / t, dim=1),
                        F.log_softmax(teacher_logits.float() / t, dim=1),
                        reduction='sum', log_target=True) * (t * t) / logits_dist.numel()

    def loss(self, inputs: torch.Tensor, data_samples: List[DataSample]) -> Dict[str, torch.Tensor]:
        if self._teacher is None:
            return super().loss(inputs, data_samples)
        out = self.head(self.extract_feat(inputs))
        if not (isinstance(out, tuple) and len(out) == 2):
            raise RuntimeError(f'{type(self.head).__name__} returned {type(out).__name__} in training; '
                               'distillation needs (logits, logits_dist)')
        logits, logits_dist = out
        if 'gt_score' in data_samples[0]:  # mixup / cutmix give soft targets
            target = torch.stack([s.gt_score for s in data_samples])
        else:
            target = torch.cat([s.gt_label for s in data_samples])
        teacher_logits = self.teacher_logits(inputs)  # the same (mixed) images the student saw, as DeiT
        if teacher_logits.shape != logits_dist.shape:
            raise ValueError(f'teacher logits {tuple(teacher_logits.shape)} and student logits '
                             f'{tuple(logits_dist.shape)} differ: both must predict the same classes')
        return dict(
            loss_cls=(1 - self.alpha) * self.cls_loss(logits, target, avg_factor=logits.size(0)),
            loss_distill=self.alpha * self.distillation_loss(logits_dist, teacher_logits))
