"""Embedding models: sentence-transformers, the ONNX backend and query micro-batching."""
