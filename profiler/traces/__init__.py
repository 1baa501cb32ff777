"""Traces, ours or recorded elsewhere: reading Kineto/Chrome files, one pass into columns, attribution of kernels and
transfers to operators (the one path live runs and imports share), the GPU timeline, ranks, serving phases, and the
import entry. Nothing here needs a live model."""
