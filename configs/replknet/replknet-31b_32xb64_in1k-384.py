# RepLKNet-31B fine-tuned at 384 px from the ImageNet-1k 224 px weights: 32 GPUs x 64 = global batch 2048.
# Upstream: RepLKNet-31B, 384x384, top-1 84.8 (RepLKNet-pytorch README); weights `replknet-31b_in1k-384`.
# Recipe (README "Finetune the ImageNet-1K-pretrained (224x224) RepLKNet-31B with 384x384"): 4 nodes x 8
# GPUs x 32 = 1024 images, lr 4e-4, weight decay 1e-8, 30 epochs with 1 warm-up epoch, drop path 0.8, EMA,
# no mixup/cutmix, layer-wise lr decay 0.7. The file name fixes a global batch of 2048, so the lr is
# linearly rescaled to 8e-4 (`--auto-scale-lr` with 1024 images gives back exactly 4e-4).
_base_ = [
    '../_base_/models/replknet-31b_in1k.py',
    '../_base_/datasets/imagenet_bs64_replknet_384.py',
    '../_base_/schedules/imagenet_adamw_30e_finetune_replknet.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmlk'], allow_failed_imports=False)
default_scope = 'mmpretrain'

model = dict(
    backbone=dict(
        drop_path_rate=0.8,
        init_cfg=dict(type='Pretrained', checkpoint='replknet-31b_in1k-224')))

optim_wrapper = dict(optimizer=dict(lr=4e-4 * 2048 / 1024))

custom_hooks = [
    dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL'),
    # WARNING in the log when the run's global batch is not auto_scale_lr.base_batch_size
    dict(type='mmlk.GlobalBatchCheckHook'),
]

auto_scale_lr = dict(enable=False, base_batch_size=2048)
