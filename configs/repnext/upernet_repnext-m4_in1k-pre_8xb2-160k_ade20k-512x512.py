# UperNet + RepNeXt-M4 on ADE20K (not an upstream setting; see the M3 config).
_base_ = ['./upernet_repnext-m3_in1k-pre_8xb2-160k_ade20k-512x512.py']
model = dict(
    backbone=dict(
        arch='m4',
        init_cfg=dict(type='Pretrained', checkpoint='repnext-m4_in1k')),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256))
