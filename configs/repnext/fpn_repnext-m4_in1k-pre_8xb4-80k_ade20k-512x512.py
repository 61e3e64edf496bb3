# Semantic FPN + RepNeXt-M4 on ADE20K. Upstream: fpn_repnext_m4_ade20k_40k
# (mIoU 43.3). Same recipe as the M3 config (global batch 32, 80k iterations).
_base_ = ['./fpn_repnext-m3_in1k-pre_8xb4-80k_ade20k-512x512.py']
model = dict(
    backbone=dict(
        arch='m4',
        init_cfg=dict(type='Pretrained', checkpoint='repnext-m4_in1k')),
    neck=dict(in_channels=[64, 128, 256, 512]))
