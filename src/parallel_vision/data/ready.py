"""Make sure a dataset is present and verified before anything is started that needs it.

Called once by every entry point (`train`, `bench`, `eda`) before the first run, so an
offline machine or a damaged file costs one clear line within seconds instead of a
failure per configuration after minutes of waiting.

One pass: the folder is resolved once, the catalogue entry looked up once, every file
stat'ed and hashed once, only the missing ones fetched (each verified before it lands),
and the result handed on as a `VerifiedDataset` the callers pass to their workers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from parallel_vision.data.catalog import DatasetSpec, get_dataset
from parallel_vision.data.download import download
from parallel_vision.data.paths import DATA_DIR_ENV, absolute, raw_dir, require_readable_dir, resolve_data_dir
from parallel_vision.data.verify import check_files
from parallel_vision.errors import DataError


@dataclass(frozen=True)
class VerifiedDataset:
    """A dataset whose every file was found (or fetched) and verified under `root`, an absolute folder."""

    spec: DatasetSpec
    root: Path
    """The absolute data root holding <dataset>/raw/ (what workers get as their data_dir)."""

    @property
    def raw(self) -> Path:
        """The folder holding the dataset's files."""
        return raw_dir(self.root, self.spec.name)


def ensure_dataset(dataset: str | DatasetSpec, data_dir: str | os.PathLike[str] | None = None) -> VerifiedDataset:
    """Verify `dataset` under the data root, downloading what is missing; return it with its absolute root.

    A present but damaged file is an error, never silently replaced. Missing files are
    fetched from the mirrors (into the user cache unless a folder was named).
    """
    spec = get_dataset(dataset)
    root = absolute(resolve_data_dir(data_dir))
    default_root = data_dir is None and not os.environ.get(DATA_DIR_ENV)
    if root.exists() or not default_root:  # the user cache is ours to create; a named folder must exist
        require_readable_dir(root)
    raw = raw_dir(root, spec.name)
    statuses = check_files(spec, raw)
    damaged = [s for s in statuses if s.present and not s.ok]
    if damaged:
        bad = damaged[0]
        raise DataError(
            f"{bad.path}: {bad.problem} (delete it and run `pvision data fetch {spec.name} --data-dir {root}`,"
            " or point --data-dir / PVISION_DATA_DIR at a verified copy)"
        )
    missing = [f for f, s in zip(spec.files, statuses, strict=True) if not s.present]
    download(spec, raw, missing)
    return VerifiedDataset(spec, root)
