"""One training job: build (data, model), fit (callbacks, ``model.fit``), lifecycle (MLflow run).

``segexp-train`` is :mod:`segexp.train.app`; importing this package imports no TensorFlow.
"""
