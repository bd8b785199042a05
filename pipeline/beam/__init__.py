"""The Beam layer: the few generic transforms that read any source (`read`) and write shards, reports and stats
(`write`), a whole run assembled from a recipe with its options and progress (`curate`), and the workers' logging
(`logs`). The per-document work it runs is `pipeline.steps`'; the deduplication stages are `pipeline.dedup.stages`."""
