# UniRepLKNet-XL pre-trained on ImageNet-22K, fine-tuned on ImageNet-1k at 384 px.
# Upstream: top-1 88.0 (UniRepLKNet README); released weights `unireplknet-xl_in21k-pre_in1k-384` (checkpoints.yaml, file unireplknet_xl_in22k_to_in1k_384_acc87.96.pth).
# Recipe: NOT yet transcribed from upstream Image/README.md (written against the deadline); the
# schedule below is the RepLKNet one this file inherits. Check Image/README.md before training.
# Evaluate the released weights:
#   python tools/test.py configs/unireplknet/unireplknet-xl_in21k-pre_in1k-384.py CKPT
_base_ = ['../replknet/replknet-31b_in21k-pre_32xb32_in1k-384.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmlk.UniRepLKNet',
        arch='xl',
        out_indices=(),
        num_classes=1000,
        drop_path_rate=0.0,
        init_cfg=dict(type='Pretrained', checkpoint='unireplknet-xl_in21k-192')))
