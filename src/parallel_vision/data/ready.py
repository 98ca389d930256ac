"""Make sure a dataset is present and verified before anything is started that needs it.

Called once by every entry point (`train`, `bench`, `eda`) before the first run, so an
offline machine or a damaged file costs one clear line within seconds instead of a
failure per configuration after minutes of waiting.
"""

from __future__ import annotations

import os
from pathlib import Path

from parallel_vision.data.download import fetch
from parallel_vision.data.paths import DATA_DIR_ENV, absolute, resolve_data_dir
from parallel_vision.data.verify import verify
from parallel_vision.errors import DataError


def ensure_dataset(dataset: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Verify `dataset` under the data root, downloading what is missing; return the absolute root.

    A present but damaged file is an error, never silently replaced. Missing files are
    fetched from the mirrors (into the user cache unless a folder was named).
    """
    root = absolute(resolve_data_dir(data_dir))
    default_root = data_dir is None and not os.environ.get(DATA_DIR_ENV)
    if not root.exists() and default_root:
        fetch(dataset, root)  # the user cache is ours to create
        return root
    statuses = verify(dataset, root)
    damaged = [s for s in statuses if s.present and not s.ok]
    if damaged:
        bad = damaged[0]
        raise DataError(
            f"{bad.path}: {bad.problem} (delete it and run `pvision data fetch {dataset} --data-dir {root}`,"
            " or point --data-dir / PVISION_DATA_DIR at a verified copy)"
        )
    if any(not s.present for s in statuses):
        fetch(dataset, root)
    return root
