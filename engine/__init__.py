"""ffnet.engine: what every domain runs on, and imports no domain.

* :mod:`~ffnet.engine.checkpoints`: the one safe, strict checkpoint loader (weights-only, layouts, reports);
* :mod:`~ffnet.engine.files`: atomic writes and run-folder locks;
* :mod:`~ffnet.engine.runner`: the mmengine Runner launch behind ``ffnet train`` / ``ffnet test``;
* :mod:`~ffnet.engine.bench`: the benchmark kit (interleaved timer, MAC/parameter counts, result tables);
* :mod:`~ffnet.engine.openmmlab`: the OpenMMLab glue that detection and segmentation share;
* :mod:`~ffnet.engine.errors`: user errors, printed as one line by the CLI;
* :mod:`~ffnet.engine.lazy`: lazy package exports.

(The name: this is the project's engine room, as mmengine is OpenMMLab's; it sits beside ``ffnet.core``,
which holds the models' building blocks.)
"""
