"""Live training: the only package that imports torch.

`attach` binds a `Run` to the user's own PyTorch loop: config edits apply at step
boundaries, control (pause, resume, stop, checkpoint now) is honoured, metrics are logged,
and the dataset view is sampled live. `train_worker` trains one model with other workers,
without a parameter server, over the run's weights CRDT.
"""

from convergent.training.live import KNOWN, Applied, Live, LiveBatches, attach
from convergent.training.worker import WorkerReport, train_worker

__all__ = ["KNOWN", "Applied", "Live", "LiveBatches", "WorkerReport", "attach", "train_worker"]
