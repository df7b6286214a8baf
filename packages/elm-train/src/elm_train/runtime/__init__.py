"""Runtime services every stage and loop shares: atomic files and checkpoints, safe loading of
DeepSpeed's files, the run-directory lock, process groups, thread settings, fault injection for
tests, metrics and live monitoring, the machine's precisions, and the shared exceptions.

The bottom wing: it imports nothing else of elm-train (settings types only for annotations), so
every other wing can use it without a cycle.
"""
