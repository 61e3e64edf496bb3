"""Kernel sources of mmlk's custom ops, importable as ``mmlk.kernels``.

They stay Python source files (Triton compiles them at run time); ``setup.py`` installs this directory as the
package ``mmlk.kernels``, and in a checkout ``mmlk/kernels`` is a link to it. Nothing here imports triton:
each kernel module does, and is imported only by the op route that launches it (``mmlk/ops/routes``).
"""
