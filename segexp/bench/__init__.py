"""`segexp-bench`: segexp-train's own run against plain Keras, in one process, as a Markdown table.

Variants, on the same model (same initial weights), data, batch size and steps per epoch:

- (a) ``segexp``: the function ``segexp-train`` runs (``segexp.train.lifecycle.train``,
  :mod:`.segexp_run`), in-process, tracking to an
  MLflow SQLite store in the benchmark's work folder; measured from what its run logs
  (``train_images_per_sec``, ``mlflow_logging_share``, the per-epoch ``loss`` and its times);
- (b) ``keras``: plain ``model.fit`` on in-memory NumPy arrays holding one epoch of segexp's own
  training stream (input scale, mask crop, sample weights as the model gets them), no
  augmentation, no callbacks;
- (c) ``python_aug``: with augmentation on, a Keras-2 ``ImageDataGenerator``-like loop: a
  ``keras.utils.PyDataset`` (one worker, like Keras 2's default) that transforms each image
  with ``scipy.ndimage`` (``affine_transform`` / ``map_coordinates``) in Python.

Each pair must reach the same final training loss (within 10 %), or its row is flagged: a speed
ratio of two fits that trained different problems is not a result. Also measured: peak resident
memory per variant (VmHWM, reset between variants), model FLOPs per image (analytical, Conv2D /
Conv2DTranspose / Dense), a matmul and a conv2d peak on this machine, the peak memory of an
in-memory versus a streamed (files, cache off) data set, each in its own subprocess, and
optionally the train step with shared against per-metric confusion matrices.
``bench.models`` runs several model presets in one command and adds one augmentation table.
Run ``segexp-bench [overrides]``; its ``bench`` section: segexp/config/schema/bench.py.

Modules: :mod:`.segexp_run` (variant a, segexp's train and build),
:mod:`.variants` (shared state, variants b and c), :mod:`.timing` (results, epoch timer,
throughput), :mod:`.checks` (loss comparability), :mod:`.step_time` (metric matrices),
:mod:`.python_baseline` (variant c's augmentation), :mod:`.measure` (memory, FLOPs, machine
peaks), :mod:`.memory` (in-memory vs streamed data), :mod:`.report` (targets and the table),
:mod:`.cli` (``segexp-bench``).
"""
