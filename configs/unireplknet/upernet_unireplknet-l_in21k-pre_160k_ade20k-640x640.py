# UperNet + UniRepLKNet-L (in21k pretrained) on ADE20K, 640x640, 160k schedule.
# Upstream: mIoU 54.5 single scale / 55.0 multi-scale, #params 254M (UniRepLKNet README); weights
# `upernet_unireplknet-l_in21k-pre_ade20k-640x640` (checkpoints.yaml). UperNet channels 512, auxiliary FCN head on stage 2.
# Optimiser: the RepLKNet AdamW setting this file inherits; upstream Segmentation/ configs (layer decay)
# NOT yet transcribed. Evaluate the released weights:
#   python tools/test.py configs/unireplknet/upernet_unireplknet-l_in21k-pre_160k_ade20k-640x640.py CKPT
_base_ = ['../replknet/upernet_replknet-31b_in1k-pre_64xb2-40k_ade20k-512x512.py']

crop_size = (640, 640)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='mmlk.UniRepLKNet',
        arch='l',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.0,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint='unireplknet-l_in21k-192')),
    decode_head=dict(in_channels=[192, 384, 768, 1536], channels=512, num_classes=150),
    auxiliary_head=dict(in_channels=768, in_index=2, num_classes=150))
