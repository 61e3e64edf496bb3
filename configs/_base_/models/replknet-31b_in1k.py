# RepLKNet-31B ImageNet classifier (Ding et al., "Scaling Up Your Kernels to 31x31", CVPR 2022).
# mmlk's RepLKNet carries the official classifier itself (final BN `norm` + Linear `head`, built when
# num_classes > 0) and returns the logits as its last output, so the official flat checkpoints load
# into `backbone` unchanged and mmpretrain's plain ClsHead only computes the loss and predictions.
# Label smoothing 0.1 is in every upstream recipe (timm's LabelSmoothingCrossEntropy / SoftTarget).
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='mmlk.RepLKNet',
        arch='31B',
        out_indices=(),
        num_classes=1000,
        drop_path_rate=0.0),
    neck=None,
    head=dict(
        type='ClsHead',
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original', loss_weight=1.0),
        topk=(1, 5)))
