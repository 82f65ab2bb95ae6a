"""The labeling job (`mtdistill label`): teachers run on dask.distributed, one task per shard, and write
pseudo-labels, confidences and provenance into the store as new versions. Flow: job (entry point) ->
plan (what is left) -> cluster (where tasks run) -> run (scheduling, commits) -> task (one shard)."""
