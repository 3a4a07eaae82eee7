"""Test-session settings.

The sampler's tensors are small (documents x particles x topics), so one intra-op thread is
as fast as two and immune to the oversubscription slow-down a busy 2-core CI box causes
(docs/performance.md measures both).
"""

import torch

torch.set_num_threads(1)
