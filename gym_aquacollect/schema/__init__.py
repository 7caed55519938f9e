"""Layer 0, schema: how values of Gymnasium spaces become flat columns, and back.

Modules: :mod:`.spaces` (``SpaceCodec``, space (de)serialisation), :mod:`.nested` (the leaf-path scheme, nested
values), :mod:`.columns` (info columns: one flattening, one drop policy), :mod:`.batched` (per-step checks of
batched values), :mod:`.flags` (terminated / truncated bits), :mod:`.stats` (episode statistics).
Imports nothing else from the package.
"""
