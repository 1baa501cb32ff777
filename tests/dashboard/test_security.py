"""The dashboard is strict by default: localhost only, XSRF protection, code only when the server allows it (and then
labelled), and it refuses to serve when started where its config is not read."""
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")


def test_python_file_is_labelled_runs_code_when_the_server_allows_code(tmp_path, monkeypatch):
    (tmp_path / "m.py").write_text("import torch\ndef build():\n    return torch.nn.Linear(2, 2), torch.ones(1, 2)\n")
    monkeypatch.setenv("OPLENS_DATA_DIRS", str(tmp_path))
    monkeypatch.setenv("OPLENS_ALLOW_CODE", "1")
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.radio(key="source").set_value("Path on this server").run()
    at.text_input(key="path").input(f"{tmp_path}/m.py:build").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    [label] = [w.value for w in at.warning if "Runs code" in w.value]
    assert "m.py is a Python file" in label and "OPLENS_ALLOW_CODE=1" in label
    monkeypatch.delenv("OPLENS_ALLOW_CODE")
    at.run()
    assert not [w for w in at.warning if "Runs code" in w.value]
    assert any("OPLENS_ALLOW_CODE=1" in e.value for e in at.error)


def test_pages_refuse_to_serve_when_the_config_was_not_read(tmp_path):
    """Started from another folder, .streamlit/config.toml is not read and Streamlit would listen everywhere."""
    script = (f"from streamlit.testing.v1 import AppTest\nimport json\nat = AppTest.from_file({APP!r}, "
              "default_timeout=30).run()\nprint(json.dumps([e.value for e in at.error] + [str(len(at.radio))]))")
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    *errors, radios = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(errors) == 1 and "start it from its own folder" in errors[0] and radios == "0"  # no page rendered


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_streamlit_run_with_no_flags_is_strict():
    """`streamlit run dashboard/app.py` from the repository (a free port is the only flag): it answers on
    127.0.0.1 only, and a state-changing request without the XSRF token is refused."""
    port = _free_port()
    command = [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port)]
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while True:
            try:
                assert urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).status == 200
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.time() < deadline, "the server did not start"
                time.sleep(0.5)
        outward = [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
                   if a.family == socket.AF_INET and not a.address.startswith("127.")]
        for address in outward:
            with pytest.raises(OSError):
                socket.create_connection((address, port), timeout=2).close()
        put = urllib.request.Request(f"http://127.0.0.1:{port}/_stcore/upload_file/session/file", method="PUT",
                                     data=b"--x\r\n", headers={"Content-Type": "multipart/form-data; boundary=x"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(put, timeout=5)
        assert refused.value.code == 403 and b"XSRF" in refused.value.read()
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_upload_offers_python_files_only_when_the_server_allows_code(monkeypatch):
    def offered(source="Upload a file") -> tuple[list[str], str, str]:
        at = AppTest.from_file(APP, default_timeout=30).run()
        at.radio(key="source").set_value(source).run()
        captions = " ".join(c.value for c in at.caption)
        if source != "Upload a file":
            return [], at.text_input(key="path").label, captions
        [uploader] = at.get("file_uploader")
        assert uploader.proto.max_upload_size_mb == 512  # the widget says the server's limit (it said 1 GB)
        return list(uploader.proto.type), uploader.proto.label, captions

    monkeypatch.delenv("OPLENS_ALLOW_CODE", raising=False)
    types, label, said = offered()
    assert types == [".pt", ".pth", ".pt2", ".ts"] and ".py" not in label
    assert "OPLENS_ALLOW_CODE=1" in said  # how an instructor enables code, said before anyone submits
    _, label, said = offered("Path on this server")
    assert "file.py:factory" not in label and "does not run Python files" in said
    monkeypatch.setenv("OPLENS_ALLOW_CODE", "1")
    types, label, said = offered()
    assert {".py", ".pkl", ".pickle"} <= set(types) and ".py with a factory (runs code)" in label
    assert "file.py:factory" in offered("Path on this server")[1]
