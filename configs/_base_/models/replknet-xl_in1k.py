# RepLKNet-XL ImageNet classifier (see replknet-31b_in1k.py for the layout). XL has no small-kernel
# re-parameterisation branch and dw_ratio 1.5 (the '31B'/'31L'/'XL' arch table lives in the backbone).
_base_ = ['./replknet-31b_in1k.py']
model = dict(backbone=dict(arch='XL'))
