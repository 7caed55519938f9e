"""Storage: the writer thread, columnar HDF5 shards and the dataset directory's manifests.

Contents:
    * :mod:`.writer` - :class:`DatasetWriter` (the thread), :class:`FlushPolicy`, :class:`Block`.
    * :mod:`.shard` - :class:`ShardWriter` / :class:`ShardReader` (columnar HDF5).
    * :mod:`.manifest` - the directory layout and atomic commits.
    * :mod:`.codecs` - per-column storage codecs (:class:`~.codecs.VideoCodec`: image columns as video).
    * :mod:`.video` - PyAV video streams: encoder settings, writing frames, GOP-seeking decoding.
    * :mod:`.flow` - :class:`~.flow.PendingBytes`, the byte budget between recorders and the writer.
"""

from gym_aquacollect.storage.manifest import DatasetFormatError
from gym_aquacollect.storage.writer import (
           Block,
           DatasetWriter,
           EpisodeEnd,
           FlushPolicy,
           Piece,
           WriterError,
           handle_sigterm,
)

__all__ = ["DatasetWriter", "FlushPolicy", "Block", "Piece", "EpisodeEnd", "WriterError", "DatasetFormatError",
           "handle_sigterm"]
