# The distillation upstream trained its released RepNeXt weights with (suous/RepNeXt main.py defaults):
# DeiT-style hard distillation, alpha 0.5, tau 1.0, teacher RegNetY-16GF. `head` learns the (mixup/cutmix)
# labels, `head_dist` the teacher's argmax on the same images. The teacher (timm's regnety_160 with DeiT's
# weights, 83.9M parameters) is frozen, in eval mode, never saved with the student and never seen by the
# optimiser (mmlk.DistillImageClassifier). A distillation config inherits its student's config and this
# file, and sets `model = {{_base_.distill_classifier}}` (merged over the student's model).
distill_classifier = dict(
    type='mmlk.DistillImageClassifier',
    teacher=dict(type='TimmClassifier', model_name='regnety_160', num_classes=1000),
    # the DeiT release upstream used (main.py --teacher-path); a state dict under "model"
    teacher_checkpoint='https://dl.fbaipublicfiles.com/deit/regnety_160-a5fe301d.pth',
    teacher_loader='state_dict',
    distillation_type='hard',
    alpha=0.5,
    tau=1.0)
