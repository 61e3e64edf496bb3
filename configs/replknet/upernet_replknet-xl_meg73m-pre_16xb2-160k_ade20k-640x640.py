# UperNet + RepLKNet-XL (MegData-73M pretrained) on ADE20K, 640x640 crops.
# Upstream: RepLKNet-XL_MegData73M_upernet_160k_ade20k_640 (mIoU 55.2 single
# scale / 56.0 multi-scale).
#
# Upstream: 2 nodes x 8 A100 x 2 images = global batch 32 for 160k iterations,
# 1500 warm-up iterations. XL differs from 31B/31L in three ways that matter:
#   * a BN on every returned stage (`norm_intermediate_features=True`),
#   * its pre-training normalisation mean = std = 127.5 (0.5 on 0-1), set in
#     the data preprocessor so that training, validation and test all use it,
#   * no small parallel kernel (part of the 'XL' arch).
# Unlike the upstream file, training runs on the training pipeline (random
# resize / crop / flip / photometric distortion); upstream passed its test
# pipeline to the training set.
_base_ = ['./upernet_replknet-31b_in21k-pre_64xb2-40k_ade20k-640x640.py']
model = dict(
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    backbone=dict(
        arch='XL',
        drop_path_rate=0.5,
        norm_intermediate_features=True,
        init_cfg=dict(type='Pretrained', checkpoint='replknet-xl_meg73m')),
    decode_head=dict(in_channels=[256, 512, 1024, 2048]),
    auxiliary_head=dict(in_channels=1024))
train_dataloader = dict(batch_size=2)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
        end=1500),
    dict(
        type='PolyLR',
        power=1.0,
        eta_min=0.0,
        by_epoch=False,
        begin=1500,
        end=160000),
]
train_cfg = dict(max_iters=160000, val_interval=2000)
auto_scale_lr = dict(enable=False, base_batch_size=32)
# WARNING in the log when the run's global batch is not auto_scale_lr.base_batch_size
custom_hooks = [dict(type='mmlk.GlobalBatchCheckHook')]
