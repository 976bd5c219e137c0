"""Compression of any network the suite builds: structured pruning (``pruning``, model kind ``pruned`` in
``pruned_model``), knowledge distillation (``distillation``) and int8 quantisation (``quantization``); the
``*_run`` modules are the ``terralite prune`` / ``distill`` commands, ``report`` their before/after rows."""
