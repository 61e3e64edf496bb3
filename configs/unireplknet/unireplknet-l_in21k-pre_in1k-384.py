# UniRepLKNet-L pre-trained on ImageNet-22K, fine-tuned on ImageNet-1k at 384 px.
# Upstream: top-1 87.9 (UniRepLKNet README); weights `unireplknet-l_in21k-pre_in1k-384`; starts from
# `unireplknet-l_in21k-192` (21841-class head dropped).
# Recipe (Image/README.md): 4 GPUs x 64 images x update_freq 2 = 512, AdamW lr 5e-5, weight decay 1e-8,
# layer-wise lr decay 0.8, 20 epochs without warm-up, drop path 0.3, no mixup/cutmix, EMA (evaluated), label smoothing 0.3,
# head_init_scale 0.001 (not expressible here: the new head keeps the default init). Minimum lr is not
# stated (ConvNeXt's default 1e-6 is used).
# Evaluate the released weights:
#   python tools/test.py configs/unireplknet/unireplknet-l_in21k-pre_in1k-384.py CKPT
_base_ = [
    '../_base_/datasets/imagenet_bs64_replknet_384.py',
    '../_base_/schedules/imagenet_adamw_30e_finetune_replknet.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmlk'], allow_failed_imports=False)
default_scope = 'mmpretrain'

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='mmlk.UniRepLKNet',
        arch='l',
        out_indices=(),
        num_classes=1000,
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint='unireplknet-l_in21k-192')),
    neck=None,
    head=dict(
        type='ClsHead',
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.3, mode='original', loss_weight=1.0),
        topk=(1, 5)))

train_dataloader = dict(batch_size=64)
val_dataloader = dict(batch_size=64)
test_dataloader = dict(batch_size=64)

optim_wrapper = dict(
    optimizer=dict(lr=5e-5, weight_decay=1e-8),
    paramwise_cfg=dict(layer_decay_rate=0.8),
    accumulative_counts=2)
param_scheduler = [
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=0, end=20, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=20, val_interval=1)

custom_hooks = [
    dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL'),
    # WARNING in the log when the run's global batch is not auto_scale_lr.base_batch_size
    dict(type='mmlk.GlobalBatchCheckHook'),
]
auto_scale_lr = dict(enable=False, base_batch_size=512)
