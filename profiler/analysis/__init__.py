"""Pure analyses over runs: frames and comparisons, diffs, the roofline, findings and recommendations (one rule
engine), why a pass helped, tables a person reads. Data in, new data out: nothing here measures, draws or prints."""
