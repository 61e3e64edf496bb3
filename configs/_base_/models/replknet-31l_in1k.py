# RepLKNet-31L ImageNet classifier (see replknet-31b_in1k.py for the layout).
_base_ = ['./replknet-31b_in1k.py']
model = dict(backbone=dict(arch='31L'))
