"""Live training: the only package that imports torch.

`attach` binds a `Run` to the user's own PyTorch loop: config edits apply at step
boundaries, control (pause, resume, stop, checkpoint now) is honoured, metrics are logged,
and the dataset view is sampled live.
"""

from convergent.training.live import KNOWN, Applied, Live, LiveBatches, attach

__all__ = ["KNOWN", "Applied", "Live", "LiveBatches", "attach"]
