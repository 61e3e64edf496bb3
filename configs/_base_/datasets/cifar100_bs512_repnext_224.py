# CIFAR-100 as RepNeXt's compact-model experiments used it (suous/RepNeXt dist_train_cifar.sh: main.py
# --data-set CIFAR, the DeiT/RepViT data code): the 32 x 32 images are upsampled to 224 px and go through
# the ImageNet pipeline, normalised with ImageNet's mean/std. Per-GPU batch 512.
# Train: RandomResizedCrop 224 bicubic, flip, RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25
# (per-pixel), repeated augmentation (DeiT's RASampler -> mmpretrain's RepeatAugSampler).
# Test: resize to int(224 / 0.875) = 256, centre crop 224.
# mmpretrain's CIFAR100 reads the python pickles under data_root/cifar-100-python (downloading them when
# absent) and yields RGB arrays, hence to_rgb=False and RGB fill values.
dataset_type = 'CIFAR100'
data_root = 'data/cifar100'
data_preprocessor = dict(
    num_classes=100,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=False)
rgb_mean = data_preprocessor['mean']
rgb_std = data_preprocessor['std']

train_pipeline = [
    dict(type='RandomResizedCrop', scale=224, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandAugment',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(pad_val=[round(x) for x in rgb_mean], interpolation='bicubic')),
    dict(
        type='RandomErasing',
        erase_prob=0.25,
        mode='rand',
        min_area_ratio=0.02,
        max_area_ratio=1 / 3,
        fill_color=rgb_mean,
        fill_std=rgb_std),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='Resize', scale=(256, 256), backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=512,
    num_workers=16,
    persistent_workers=True,
    dataset=dict(type=dataset_type, data_root=data_root, split='train', pipeline=train_pipeline),
    sampler=dict(type='RepeatAugSampler', shuffle=True))
val_dataloader = dict(
    batch_size=512,
    num_workers=16,
    persistent_workers=True,
    dataset=dict(type=dataset_type, data_root=data_root, split='test', pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
