# UperNet + RepLKNet-31L (ImageNet-22k pretrained) on ADE20K, 640x640 crops.
# Upstream: RepLKNet-31L_22Kpretrain_upernet_160k_ade20k_640 (mIoU 52.4 single
# scale / 52.7 multi-scale).
#
# Upstream: 8 nodes x 8 GPUs x 1 image = global batch 64 for 80k iterations,
# 800 warm-up iterations; everything else as the 31B 22k config.
# One image per GPU relies on SyncBN across GPUs: the head's 1x1 pyramid-pooling BN needs at least
# two values per channel, so on a single GPU or a CPU (where SyncBN becomes BN) use batch_size >= 2.
_base_ = ['./upernet_replknet-31b_in21k-pre_64xb2-40k_ade20k-640x640.py']
model = dict(
    backbone=dict(
        arch='31L',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint='replknet-31l_in21k-224')),
    decode_head=dict(in_channels=[192, 384, 768, 1536]),
    auxiliary_head=dict(in_channels=768))
train_dataloader = dict(batch_size=1)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
        end=800),
    dict(
        type='PolyLR',
        power=1.0,
        eta_min=0.0,
        by_epoch=False,
        begin=800,
        end=80000),
]
train_cfg = dict(max_iters=80000, val_interval=2000)
auto_scale_lr = dict(enable=False, base_batch_size=64)
# WARNING in the log when the run's global batch is not auto_scale_lr.base_batch_size
custom_hooks = [dict(type='mmlk.GlobalBatchCheckHook')]
