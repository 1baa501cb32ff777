"""The README's "From Python" example runs as it stands (the public API a user scripts against)."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_python_example_runs(tmp_path, cached_peaks):  # cached: the example reads them, never measures
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## From Python"):readme.index("## Layout")]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    script = tmp_path / "example.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert re.match(r"^\d+\.\d\d ms median; top operator \S+", lines[0]), lines
    assert re.search(r"^\d+\.\d\dx, outputs (match|DIFFER)$", out.stdout, re.M), out.stdout
    assert "H100" in lines[-1] and lines[-1].endswith("ms busy per step"), lines
