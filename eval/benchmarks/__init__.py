"""The benchmark behind `python eval/bench.py`, one module per concern: `common` (options,
results, percentiles, RSS, machine facts, tables, child processes), `server` (`rag serve`
and its /metrics), `load` (the HTTP load generator), and a module per section or group of
sections: `cold`, `indexing` (and `knobs`), `query`, `http_bench` (`http`), `vectors`
(`scaling`, `tuning`), `reader`, `writes`. `eval/bench.py` is the command line."""
