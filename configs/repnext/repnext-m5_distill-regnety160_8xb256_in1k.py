# RepNeXt-M5 on ImageNet-1k, distilled from RegNetY-16GF as upstream trained its released weights
# (suous/RepNeXt README: top-1 83.3, weights `repnext-m5_in1k`): DeiT-style hard distillation,
# alpha 0.5, tau 1.0 (main.py defaults). Data, schedule (8 GPUs x 256 = global batch 2048, AdamW 4e-3,
# 300 epochs), EMA and augmentation as repnext-m5_8xb256_in1k.py; only the classifier changes:
# `head` learns the (mixup/cutmix) labels, `head_dist` the teacher's argmax on the same images.
# The teacher (timm's regnety_160 with DeiT's weights, 83.9M parameters) is frozen, in eval mode, never
# saved with the student and never seen by the optimiser (mmlk.DistillImageClassifier).
_base_ = ['./repnext-m5_8xb256_in1k.py']
custom_imports = dict(imports=['mmlk', 'mmlk.models.classifiers.distill'], allow_failed_imports=False)

model = dict(
    type='mmlk.DistillImageClassifier',
    teacher=dict(type='TimmClassifier', model_name='regnety_160', num_classes=1000),
    # the DeiT release upstream used (main.py --teacher-path); a state dict under "model"
    teacher_checkpoint='https://dl.fbaipublicfiles.com/deit/regnety_160-a5fe301d.pth',
    teacher_loader='state_dict',
    distillation_type='hard',
    alpha=0.5,
    tau=1.0)

# lr is already the global-batch value; scaling it would double-count.
auto_scale_lr = dict(enable=False, base_batch_size=2048)
