# RepNeXt-M0E on CIFAR-100 at 224 px, 300 epochs, upstream's compact-model experiment (suous/RepNeXt README,
# logs/compact/cifar: top-1 73.56 / 79.79 / 81.89 / 82.07 at 100 / 200 / 300 / 400 epochs; 81.89 here).
# M0E is the single-branch equivalent form of M0, trained as such (one depthwise 11x11 per block, one 7x7
# stride-2 per downsample); recipe and schedule are exactly those of the M0 config it inherits.
_base_ = ['./repnext-m0_4xb512-300e_cifar100.py']

model = dict(backbone=dict(arch='m0e'))
