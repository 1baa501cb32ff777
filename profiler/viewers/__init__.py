"""Other tools' views of a run: a self-contained HTML report, TensorBoard's profiler plugin, Google's Model Explorer."""
