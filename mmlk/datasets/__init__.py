"""Datasets: mini synthetic datasets in real layouts (see :mod:`mmlk.datasets.mini`)."""
