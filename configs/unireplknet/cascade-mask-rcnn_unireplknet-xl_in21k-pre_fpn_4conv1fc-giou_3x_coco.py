# Cascade Mask R-CNN + UniRepLKNet-XL (in21k pretrained) on COCO, 3x, 1280x800.
# Upstream: box AP 56.4 / mask AP 49.0, #params 443M (UniRepLKNet README); weights `cascade-mask-rcnn_unireplknet-xl_in21k-pre_coco-3x`.
# Heads / schedule: inherited from the RepLKNet Cascade Mask R-CNN 3x config (4conv1fc GIoU heads);
# upstream Detection/ configs NOT yet compared. Evaluate the released weights:
#   python tools/test.py configs/unireplknet/cascade-mask-rcnn_unireplknet-xl_in21k-pre_fpn_4conv1fc-giou_3x_coco.py CKPT
_base_ = ['../replknet/cascade-mask-rcnn_replknet-31b_in1k-pre_fpn_4conv1fc-giou_32xb1-ms-crop-3x_coco.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmlk.UniRepLKNet',
        arch='xl',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.0,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint='unireplknet-xl_in21k-192')),
    neck=dict(in_channels=[256, 512, 1024, 2048]))
