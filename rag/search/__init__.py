"""Retrieval: dense, BM25 and hybrid search with fusion, and the explain view."""
