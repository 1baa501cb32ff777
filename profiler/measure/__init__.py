"""Measuring a model live: the profile session, generation step by step, sweeps, this machine's peaks, timing,
memory, FLOP counting, the graph with per-node times, the measurement lock and first-inference checks."""
