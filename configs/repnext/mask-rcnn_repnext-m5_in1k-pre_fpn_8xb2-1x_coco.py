# Mask R-CNN + RepNeXt-M5 on COCO, 1x. Upstream: mask_rcnn_repnext_m5_fpn_1x_coco
# (box AP 44.7, mask AP 40.7). Same recipe as the M3 config.
_base_ = ['./mask-rcnn_repnext-m3_in1k-pre_fpn_8xb2-1x_coco.py']
model = dict(
    backbone=dict(
        arch='m5',
        init_cfg=dict(type='Pretrained', checkpoint='repnext-m5_in1k')),
    neck=dict(in_channels=[80, 160, 320, 640]))
