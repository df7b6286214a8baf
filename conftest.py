"""Repository-wide test settings.

The test models are tiny: one torch thread runs them faster than two (thread start-up costs more
than the work), and it keeps concurrent test processes from oversubscribing the cores.
"""

import os

# pytester runs the suite's own conftest on generated test modules (the precision guard's test)
pytest_plugins = ["pytester"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# elm-train subprocesses (torchrun, killed runs) use one thread too: results compared bit for bit
# with in-process runs must come from the same arithmetic
os.environ.setdefault("ELM_TRAIN_THREADS", "1")

try:
    import torch
except ImportError:  # elm-space and elm-search tests run without torch too
    torch = None

if torch is not None:
    torch.set_num_threads(1)
