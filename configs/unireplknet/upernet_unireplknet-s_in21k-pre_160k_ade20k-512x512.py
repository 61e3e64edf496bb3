# UperNet + UniRepLKNet-S (in21k pretrained) on ADE20K, 512x512, 160k schedule.
# Upstream: mIoU 51.9 single scale / 52.7 multi-scale, #params 86M (UniRepLKNet README); weights
# `upernet_unireplknet-s_in21k-pre_ade20k-512x512` (checkpoints.yaml). UperNet channels 512, auxiliary FCN head on stage 2.
# Optimiser: the RepLKNet AdamW setting this file inherits; upstream Segmentation/ configs (layer decay)
# NOT yet transcribed. Evaluate the released weights:
#   python tools/test.py configs/unireplknet/upernet_unireplknet-s_in21k-pre_160k_ade20k-512x512.py CKPT
_base_ = ['../replknet/upernet_replknet-31b_in1k-pre_64xb2-40k_ade20k-512x512.py']

crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='mmlk.UniRepLKNet',
        arch='s',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.0,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint='unireplknet-s_in21k-224')),
    decode_head=dict(in_channels=[96, 192, 384, 768], channels=512, num_classes=150),
    auxiliary_head=dict(in_channels=384, in_index=2, num_classes=150))
