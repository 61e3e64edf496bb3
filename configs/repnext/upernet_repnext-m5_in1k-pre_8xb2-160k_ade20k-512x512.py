# UperNet + RepNeXt-M5 on ADE20K (not an upstream setting; see the M3 config).
_base_ = ['./upernet_repnext-m3_in1k-pre_8xb2-160k_ade20k-512x512.py']
model = dict(
    backbone=dict(
        arch='m5',
        init_cfg=dict(type='Pretrained', checkpoint='repnext-m5_in1k')),
    decode_head=dict(in_channels=[80, 160, 320, 640]),
    auxiliary_head=dict(in_channels=320))
