"""Market data: ingest (raw captures -> normalized parquet), store, verify, download, synth, and the bridge to kernels."""
