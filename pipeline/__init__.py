"""lmforge curation: sources → documents → extraction → language ID → filters → dedup → shards."""
