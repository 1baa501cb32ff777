"""Where models come from and what they are: sources (samples, files, HF directories, hub ids), loading into a
LoadedModel with its traits, synthetic inputs, and the decoder view of a causal LM. Nothing here measures."""
