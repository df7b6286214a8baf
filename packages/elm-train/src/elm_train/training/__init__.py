"""Training: the DeepSpeed loop and engine, distillation losses and teacher features, PCA growth,
batches, and the loops built on them (supernet, multitask, retraining, task and QA distillation,
the stand-in teacher).

Uses the runtime wing, the settings (:mod:`elm_train.config`) and the models; never the search
wing or the pipeline.
"""
