# RepLKNet-31B pre-trained on ImageNet-22K, fine-tuned on ImageNet-1k at 224 px: 32 GPUs x 32 = 1024.
# Upstream: RepLKNet-31B 22K->1K, 224x224, top-1 85.2 (RepLKNet-pytorch README); weights
# `replknet-31b_in21k-pre_in1k-224`; starts from `replknet-31b_in21k-224` (21841-class head dropped).
# Recipe (README "Finetune 22K-pretrained RepLKNet-31B on ImageNet-1K (224x224)"): 2 nodes x 8 GPUs x 32
# = 512 images, lr 4e-4, weight decay 1e-8, 30 epochs with 1 warm-up epoch, drop path 0.2, EMA, no
# mixup/cutmix, layer-wise lr decay 0.7. lr linearly rescaled to this file's batch of 1024: 8e-4.
_base_ = [
    '../_base_/models/replknet-31b_in1k.py',
    '../_base_/datasets/imagenet_bs64_replknet_224.py',
    '../_base_/schedules/imagenet_adamw_30e_finetune_replknet.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmlk'], allow_failed_imports=False)
default_scope = 'mmpretrain'

model = dict(
    backbone=dict(
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint='replknet-31b_in21k-224')))

train_dataloader = dict(batch_size=32)
val_dataloader = dict(batch_size=32)
test_dataloader = dict(batch_size=32)

optim_wrapper = dict(optimizer=dict(lr=4e-4 * 1024 / 512))

custom_hooks = [
    dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL'),
    # WARNING in the log when the run's global batch is not auto_scale_lr.base_batch_size
    dict(type='mmlk.GlobalBatchCheckHook'),
]

auto_scale_lr = dict(enable=False, base_batch_size=1024)
