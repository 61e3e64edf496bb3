# UniRepLKNet-S pretraining on ImageNet-22K (21841 classes) at 224 px.
# Upstream: released weights `unireplknet-s_in21k-224`; no accuracy published (upstream trains with
# --disable_eval). Recipe (Image/README.md): 2 nodes x 8 GPUs x 32 images x update_freq 8 = 4096,
# AdamW lr 0.004, drop path 0.1, 90 epochs with 5 warm-up epochs, input 224.
# Data: mmlk ships no ImageNet-22K pipeline; the inherited ImageNet-1k 224 pipeline is a placeholder -
# point train_dataloader at your 22K image folder before training.
# Mixup 0.8 / cutmix 1.0, weight decay 0.05 and label smoothing 0.1 are main.py / ConvNeXt defaults, not
# stated in Image/README.md. This file mainly describes the released model (its 21841-class head).
_base_ = ['./unireplknet-s_in1k-224.py']

model = dict(
    backbone=dict(arch='s', num_classes=21841, drop_path_rate=0.1),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))

train_dataloader = dict(batch_size=32)
optim_wrapper = dict(optimizer=dict(lr=0.004), accumulative_counts=8)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=5, end=90, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=90, val_interval=90)
auto_scale_lr = dict(enable=False, base_batch_size=4096)
