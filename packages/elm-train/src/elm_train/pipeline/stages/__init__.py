"""The pipeline's stages: each a thin adapter from the run directory to the library and back.

A stage module never imports another stage module; what one stage needs from an earlier one it
reads from the run directory through :class:`~elm_train.pipeline.layout.RunLayout`.
"""
