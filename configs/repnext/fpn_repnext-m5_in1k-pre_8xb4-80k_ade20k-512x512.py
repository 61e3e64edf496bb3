# Semantic FPN + RepNeXt-M5 on ADE20K. Upstream: fpn_repnext_m5_ade20k_40k
# (mIoU 45.0). Same recipe as the M3 config (global batch 32, 80k iterations).
_base_ = ['./fpn_repnext-m3_in1k-pre_8xb4-80k_ade20k-512x512.py']
model = dict(
    backbone=dict(
        arch='m5',
        init_cfg=dict(type='Pretrained', checkpoint='repnext-m5_in1k')),
    neck=dict(in_channels=[80, 160, 320, 640]))
