"""Search glue: what connects elm-search's searchers to a trained supernet. The fitness factory
(every ``search.fitness``), the constraints and budgets, the latency table's load-or-measure, the
Pareto front and plots, and the per-layer head choice by CKA.

Uses the training wing (the supernet's distillation objective) and the runtime wing; never the
pipeline.
"""
