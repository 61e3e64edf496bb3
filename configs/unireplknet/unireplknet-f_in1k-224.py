# UniRepLKNet-F trained from scratch on ImageNet-1k at 224 px.
# Upstream: top-1 78.6 (UniRepLKNet README); weights `unireplknet-f_in1k-224` (unireplknet_f_in1k_224_acc78.58.pth).
# Recipe (Image/README.md): 4 GPUs x 128 images x update_freq 8 = global batch 4096, AdamW lr 4e-3,
# drop path 0.0, mixup 0.3 / cutmix 0.3. Epochs, warm-up, weight decay and EMA are not stated there; this
# file keeps the ConvNeXt-style defaults of the inherited schedule (300 epochs, 10 warm-up, wd 0.05, no EMA).
# Evaluate the released weights:
#   python tools/test.py configs/unireplknet/unireplknet-f_in1k-224.py CKPT
_base_ = [
    '../_base_/datasets/imagenet_bs64_replknet_224.py',
    '../_base_/schedules/imagenet_bs2048_adamw_300e_replknet.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmlk'], allow_failed_imports=False)
default_scope = 'mmpretrain'

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='mmlk.UniRepLKNet',
        arch='f',
        out_indices=(),
        num_classes=1000,
        drop_path_rate=0.0),
    neck=None,
    head=dict(
        type='ClsHead',
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original', loss_weight=1.0),
        topk=(1, 5)),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.3), dict(type='CutMix', alpha=0.3)]))

train_dataloader = dict(batch_size=128)
# update_freq 8 of the upstream command
optim_wrapper = dict(optimizer=dict(lr=4e-3), accumulative_counts=8)

custom_hooks = [
    # WARNING in the log when the run's global batch is not auto_scale_lr.base_batch_size
    dict(type='mmlk.GlobalBatchCheckHook'),
]
auto_scale_lr = dict(enable=False, base_batch_size=4096)
