"""Text analysis: sentences, chunking and the terms BM25 and answers match on."""
