"""The export methods shared by :class:`~gym_aquacollect.Dataset`, the in-memory datasets the importers return
and the collectors.

Contents:
    * :class:`ExportMixin` - ``export_for_offline_rl``, ``export_for_teacher_student``, ``to_minari`` and
      ``export_trajectories``, ``to_lerobot``; a class mixes it in and, if it is not a dataset itself, overrides
      :meth:`ExportMixin._export_source` to return one.

The format code lives in :mod:`gym_aquacollect.formats` and is imported on first use (through
:func:`gym_aquacollect.data.registry.late_import`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gym_aquacollect.data.registry import late_import

__all__ = ["ExportMixin"]


class ExportMixin:
    """Adds the exporters to a dataset-like class (see :mod:`gym_aquacollect.formats`)."""

    def _export_source(self) -> Any:
        return self

    def export_for_offline_rl(self, directory: str | os.PathLike, **kwargs: Any) -> dict[str, Path]:
        """Write a Minari dataset (``directory/minari/<id>``) and a D4RL file (``directory/d4rl.hdf5``)."""
        export_for_offline_rl = late_import("gym_aquacollect.formats").export_for_offline_rl
        return export_for_offline_rl(self._export_source(), directory, **kwargs)

    def export_for_teacher_student(self, directory: str | os.PathLike, **kwargs: Any) -> Path:
        """Write a robomimic / Isaac Lab demo file (``directory/demos.hdf5``); ``only_successful=True`` and
        ``actions="teacher"`` are the usual options."""
        export_for_teacher_student = late_import("gym_aquacollect.formats").export_for_teacher_student
        return export_for_teacher_student(self._export_source(), directory, **kwargs)

    def to_minari(self, dataset_id: str | None = None, **kwargs: Any) -> Path:
        """Write a Minari dataset into ``$MINARI_DATASETS_PATH`` (or Minari's default root), env spec included."""
        to_minari = late_import("gym_aquacollect.formats.minari").to_minari
        return to_minari(self._export_source(), dataset_id, **kwargs)

    def to_lerobot(self, out: str | os.PathLike, **kwargs: Any) -> Path:
        """Write a LeRobotDataset v3.0 directory ``out`` (parquet + AV1 video; ``fps=``, ``task=``, ``vcodec=``,
        ``crf=``, ...): see :func:`gym_aquacollect.formats.lerobot.write_lerobot`."""
        write_lerobot = late_import("gym_aquacollect.formats.lerobot").write_lerobot
        return write_lerobot(self._export_source(), out, **kwargs)

    def export_trajectories(self, path: str | os.PathLike, format: str = "pickle", include_metadata: bool = True,
                            **kwargs: Any) -> Path:
        """Write all episodes to one ``pickle`` / ``npz`` / ``hdf5`` file (see :mod:`gym_aquacollect.formats.trajectories`)."""
        export_trajectories = late_import("gym_aquacollect.formats.trajectories").export_trajectories
        return export_trajectories(self._export_source(), path, format=format, include_metadata=include_metadata,
                                   **kwargs)
