"""Prediction with a trained model: contract, store, inference, outputs, scores.

Its input contract (``contract``), storing and loading it with the contract (``store``), tiled
or resized inference (``inference``), the files read and written (``outputs``), scores against
true masks (``scores``) and the ``segexp-predict`` Hydra app (``schema``, ``app``)."""
