# RepNeXt ImageNet classifier (Zhao et al., "RepNeXt: A Fast Multi-Scale CNN using Structural
# Reparameterization", arXiv 2406.16004): backbone, global average pooling, and upstream's two-head
# classifier (`head` + `head_dist`, BatchNorm1d + Linear each, prediction = their mean).
# Configs for the other variants change `arch` and `in_channels` (the last stage's width).
model = dict(
    type='ImageClassifier',
    backbone=dict(type='mmlk.RepNeXt', arch='m3', out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='mmlk.RepNeXtClsHead',
        num_classes=1000,
        in_channels=512,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original', loss_weight=1.0)))
