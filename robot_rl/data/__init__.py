"""The HDF5 episode store (robomimic layout, crash-safe writes, validated reads) and device-resident sampling.

The store: ``layout.py`` (the on-disk layout), ``episode.py`` (one episode in memory), ``writer.py`` and
``journal.py`` (atomic commits), ``labels.py`` (reward labels and the active reward), ``reader.py`` (validation
and reading), ``sampling.py`` (batches on a device).

```
with DatasetWriter("d.h5", spec, source="sim") as w:   # DatasetWriter(..., resume=True) continues a file
    w.add_episode(episode)                              # committed (survives kill -9) once this returns
with Dataset("d.h5") as ds:                             # validates on open; DatasetError: one line
    batch = TransitionSampler(ds.transitions(), device, seed=0).sample(256)
```
"""

from robot_rl.data.episode import Episode
from robot_rl.data.errors import DatasetError, DatasetWarning
from robot_rl.data.labels import active_label, write_reward_labels
from robot_rl.data.layout import FORMAT_VERSION, GROUND_TRUTH
from robot_rl.data.reader import Dataset, open_dataset
from robot_rl.data.sampling import Segments, SegmentSampler, TransitionSampler
from robot_rl.data.writer import DatasetWriter, rewrite_masks

__all__ = [
    "FORMAT_VERSION", "GROUND_TRUTH", "Dataset", "DatasetError", "DatasetWarning", "DatasetWriter", "Episode",
    "SegmentSampler", "Segments", "TransitionSampler", "active_label", "open_dataset", "rewrite_masks",
    "write_reward_labels",
]
