"""Storage: the writer thread, columnar HDF5 shards and the dataset directory's manifests.

Contents:
    * :mod:`.writer` - :class:`DatasetWriter` (the thread), :class:`FlushPolicy`, :class:`Block`.
    * :mod:`.shard` - :class:`ShardWriter` / :class:`ShardReader` (columnar HDF5).
    * :mod:`.manifest` - the directory layout and atomic commits.
    * :mod:`.flow` - :class:`~.flow.PendingBytes`, the byte budget between recorders and the writer.
"""

from .manifest import DatasetFormatError
from .writer import Block, DatasetWriter, EpisodeEnd, FlushPolicy, Piece, WriterError, handle_sigterm

__all__ = ["DatasetWriter", "FlushPolicy", "Block", "Piece", "EpisodeEnd", "WriterError", "DatasetFormatError",
           "handle_sigterm"]
