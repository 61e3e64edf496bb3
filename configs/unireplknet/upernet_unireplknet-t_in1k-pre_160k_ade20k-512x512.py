# UperNet + UniRepLKNet-T (in1k pretrained) on ADE20K, 512x512, 160k schedule.
# Upstream: mIoU 48.6 single scale / 49.1 multi-scale, #params 61M (UniRepLKNet README); weights
# `upernet_unireplknet-t_in1k-pre_ade20k-512x512` (checkpoints.yaml). UperNet channels 512, auxiliary FCN head on stage 2.
# Optimiser: the RepLKNet AdamW setting this file inherits; upstream Segmentation/ configs (layer decay)
# NOT yet transcribed. Evaluate the released weights:
#   python tools/test.py configs/unireplknet/upernet_unireplknet-t_in1k-pre_160k_ade20k-512x512.py CKPT
_base_ = ['../replknet/upernet_replknet-31b_in1k-pre_64xb2-40k_ade20k-512x512.py']

crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='mmlk.UniRepLKNet',
        arch='t',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.0,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint='unireplknet-t_in1k-224')),
    decode_head=dict(in_channels=[80, 160, 320, 640], channels=512, num_classes=150),
    auxiliary_head=dict(in_channels=320, in_index=2, num_classes=150))
