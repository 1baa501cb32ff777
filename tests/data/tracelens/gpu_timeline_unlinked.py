# Fallback for traces without 'ac2g' flow events: TraceLens cannot link kernels to CPU ops,
# so the CLI aborts. Compute only the GPU timeline with include_unlinked_kernels=True.
import sys
import os
from TraceLens import TreePerfAnalyzer
src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
pa = TreePerfAnalyzer.from_file(profile_filepath=src, include_unlinked_kernels=True)
df = pa.get_df_gpu_timeline()
df.to_csv(os.path.join(out, "gpu_timeline.csv"), index=False)
print(df.to_string())
try:
    dk = pa.get_df_kernels()
    print("df_kernels", dk.shape, list(dk.columns)[:12])
except Exception as e:
    print("get_df_kernels failed:", type(e).__name__, e)
