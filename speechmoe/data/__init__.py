"""Corpora, manifests and batches."""
