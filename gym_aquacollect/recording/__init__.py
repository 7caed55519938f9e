"""Layer 4, recording: the engine between an env's steps and the writer.

Modules: :mod:`.batched` (``Chunk``, ``BatchedRecorder``: the vectorised splitter and the episode hold),
:mod:`.torch_staging` (device-side staging of Isaac Lab tensors). Imports schema, storage and data only; talks to
collectors through the hooks they expose (duck typing, never an import).
"""
