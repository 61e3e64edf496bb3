# RepLKNet fine-tuning schedule (RepLKNet-pytorch README "Finetune ..." commands, ConvNeXt-style code):
# AdamW, lr 4e-4 at a global batch of 512 (configs rescale it to their own batch), weight decay 1e-8
# (none on biases and 1-D parameters), 30 epochs, 1 warm-up epoch, cosine to min_lr 1e-6, layer-wise
# lr decay 0.7 (upstream's RepLKNetLayerDecayValueAssigner, 12 layer groups -> mmlk's constructor).
# Upstream applies min_lr before the per-layer scale, so the floor is a ratio of each group's lr here.
optim_wrapper = dict(
    constructor='mmlk.LearningRateDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=4e-4, weight_decay=1e-8, eps=1e-8, betas=(0.9, 0.999)),
    paramwise_cfg=dict(
        layer_decay_rate=0.7,
        decay_type='layer_wise',
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0))

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min_ratio=1e-6 / 4e-4, by_epoch=True, begin=1, end=30,
         convert_to_iter_based=True),
]

train_cfg = dict(by_epoch=True, max_epochs=30, val_interval=1)
val_cfg = dict()
test_cfg = dict()

auto_scale_lr = dict(enable=False, base_batch_size=512)
