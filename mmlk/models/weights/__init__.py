"""Weights into models: strict, reported loading of released checkpoints (issue #7, #23).

* :func:`load_pretrained` - resolve, read, adapt and strictly load any released format (``init_weights``).
* :func:`read_state_dict` - read a file safely into official key names.
* :mod:`.keys` - the families' key codecs (:func:`register_family`), format detection and the fit check.
* :mod:`.convert` - upstream downstream / classification files -> checkpoints mmlk's configs load
  (behind ``tools/model_converters/convert_*.py``).

Nothing here names a family: each registers its codec (its backbone class) from its package (``mmlk.models.<family>``).
The files themselves are read by the layer beneath, :mod:`mmlk.checkpoint`.
"""
from .keys import check_state_dict_fits, known_formats, register_family
from .loading import load_pretrained, read_state_dict

__all__ = ['load_pretrained', 'read_state_dict', 'check_state_dict_fits', 'register_family', 'known_formats']
