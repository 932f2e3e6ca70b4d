"""`segexp-bench`: segexp's training path against plain Keras, in one process, as a Markdown table.

Variants, on the same model (same initial weights), data, batch size and steps per epoch:

- (a) ``segexp``: segexp's training path as configured: ``make_dataset`` (cache, shuffle,
  stateless-seeded augmentation, batch, prefetch), the configured callbacks (checkpoints, ...),
  the per-epoch resume checkpoint and the real :class:`~segexp.train.epoch_logger.EpochLogger`
  logging every epoch to a temporary MLflow SQLite store;
- (b) ``keras``: plain ``model.fit`` on in-memory NumPy arrays, no augmentation, no callbacks;
- (c) ``python_aug``: with augmentation on, a Keras-2 ``ImageDataGenerator``-like loop: a
  ``keras.utils.PyDataset`` (one worker, like Keras 2's default) that transforms each image
  with ``scipy.ndimage`` (``affine_transform`` / ``map_coordinates``) in Python.

Warm-up epochs are excluded; every variant runs full passes over the same training split.
Also measured: peak resident memory per variant (VmHWM, reset between variants), model FLOPs
per image (analytical, Conv2D / Conv2DTranspose / Dense), a matmul and a conv2d peak on this
machine, and the peak memory of an in-memory versus a streamed (files, cache off) data set,
each in its own subprocess. ``bench.models`` runs several model presets in one command and adds
one augmentation table: the input pipeline alone (segexp against the Python loop) and training
with against without each augmentation. Run ``segexp-bench [overrides]``; settings under
``bench:`` in ``conf/bench.yaml``.

Modules: :mod:`.measure` (memory, FLOPs, machine peaks), :mod:`.python_baseline` (variant c's
augmentation), :mod:`.variants` (the three variants), :mod:`.memory` (in-memory vs streamed
data), :mod:`.report` (targets and the table), :mod:`.cli` (``segexp-bench``).
"""
