"""The ops, one topic per file. `nnlite.functional` re-exports them as `F`."""
