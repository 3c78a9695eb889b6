"""CIFAR-10 with PyTorch: data, models, trainer and the `python -m cifar` CLI.

Modules: `data` (reading the python-version files), `pipeline` (batched augmentation),
`models` and `presets` (architectures and recipes as plain dicts), `engine` (the model and
optimiser steps), `evaluate` (accuracy and TTA), `checkpoint` and `rundir` (files of a run),
`train` (the loop that ties them together) and `cli`.
"""
