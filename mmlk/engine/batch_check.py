"""A hook that writes, at the start of training, whether the run's global batch is the config's."""
import logging

from mmengine.hooks import Hook
from mmengine.logging import print_log

from mmlk.registry import HOOKS


@HOOKS.register_module()
class GlobalBatchCheckHook(Hook):
    """WARNING in the run's log when the global batch differs from ``auto_scale_lr.base_batch_size``.

    mmlk's configs follow the host libraries in leaving ``auto_scale_lr`` disabled (``--auto-scale-lr``
    switches it on). A run on another number of GPUs would otherwise train with a learning rate tuned for
    another batch and say so nowhere; this hook makes the host libraries' own ``train.py`` say it too.
    """

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        from mmlk.engine.host_config import global_batch_warning
        message = global_batch_warning(runner.cfg, runner.world_size)
        if message:
            print_log(f'mmlk: {message}', logger='current', level=logging.WARNING)
