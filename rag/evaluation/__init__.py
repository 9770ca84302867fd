"""Evaluation: the bundled question set, BEIR retrieval benchmarks and SQuAD v1.1.

Light to import (the CLI imports `options` at start-up); the work is in the submodules:
`runner` ties data, index and engine together; `bundled`, `beir` and `squad` hold each
format's predictions and scoring; `data` the file formats; `report` the --json contract;
`render` the tables and plot; `cli` the command's body. The metric functions themselves
are in `rag.metrics`.
"""
