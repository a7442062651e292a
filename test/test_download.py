"""`mde-ros download` against a real HTTP server on 127.0.0.1 serving small files."""

from __future__ import annotations

import hashlib
import json
import socket
import struct
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mde_ros.models.download import DownloadError, download_model, fetch_file
from mde_ros.models.registry import RemoteFile, get_entry

REPO = Path(__file__).resolve().parents[1]


def _safetensors(payload: bytes) -> bytes:
    header = json.dumps({"w": {"dtype": "U8", "shape": [len(payload)], "data_offsets": [0, len(payload)]}})
    header_bytes = header.encode()
    return struct.pack("<Q", len(header_bytes)) + header_bytes + payload


class Server:
    """Serves `files` (path -> bytes) with Range support; `cut` makes the next reply stop halfway."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_next = False
        self.ranges: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep the test output clean
                pass

            def do_GET(self) -> None:
                server.ranges.append(self.headers.get("Range"))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_next:
                    server.cut_next = False
                    body = body[: len(body) // 2]  # the connection closes early: a truncated transfer
                    self.close_connection = True
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


def _remote(name: str, data: bytes, pin: bool = True) -> RemoteFile:
    digest = hashlib.sha256(data).hexdigest() if pin else None
    return RemoteFile(url=f"https://example.invalid/{name}", name=name, sha256=digest, size=len(data))


def test_download_verifies_hash(tmp_path, server):
    data = _safetensors(b"weights" * 1000)
    server.files["/m.safetensors"] = data
    target = fetch_file(
        _remote("m.safetensors", data), f"{server.url}/m.safetensors", tmp_path / "m.safetensors"
    )
    assert target.read_bytes() == data and not (tmp_path / "m.safetensors.part").exists()


def test_hash_mismatch_is_refused_and_leaves_no_file(tmp_path, server):
    data = _safetensors(b"weights" * 1000)
    server.files["/m.safetensors"] = data
    wrong = RemoteFile(url="", name="m.safetensors", sha256="0" * 64)
    with pytest.raises(DownloadError, match="sha256"):
        fetch_file(wrong, f"{server.url}/m.safetensors", tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_truncated_transfer_then_resume_with_range(tmp_path, server):
    data = _safetensors(bytes(range(256)) * 400)
    server.files["/m.safetensors"] = data
    server.cut_next = True
    url, target = f"{server.url}/m.safetensors", tmp_path / "m.safetensors"
    with pytest.raises(DownloadError, match="again to resume"):
        fetch_file(_remote("m.safetensors", data), url, target)
    partial = tmp_path / "m.safetensors.part"
    assert 0 < partial.stat().st_size < len(data) and not target.exists()
    fetch_file(_remote("m.safetensors", data), url, target)
    assert target.read_bytes() == data
    assert server.ranges[-1] == f"bytes={len(data) // 2}-"  # only the missing half was requested


def test_unpinned_file_is_checked_for_format(tmp_path, server):
    server.files["/bad.pth"] = b"<html>rate limited</html>"
    with pytest.raises(DownloadError, match="not a PyTorch checkpoint"):
        fetch_file(RemoteFile("", "bad.pth"), f"{server.url}/bad.pth", tmp_path / "bad.pth")


def test_404_names_the_url(tmp_path, server):
    with pytest.raises(DownloadError, match=r"/missing\.pth: HTTP 404"):
        fetch_file(RemoteFile("", "missing.pth"), f"{server.url}/missing.pth", tmp_path / "missing.pth")


def test_offline_gives_a_clear_error(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadError, match="offline"):
        fetch_file(RemoteFile("", "x.pth"), f"http://127.0.0.1:{port}/x.pth", tmp_path / "x.pth")


def _serve_entry(server: Server, name: str) -> None:
    for remote in get_entry(name).files:
        path = remote.url.removeprefix("https://huggingface.co")
        if remote.name.endswith(".json"):
            server.files[path] = json.dumps({"model_name": name}).encode()
        elif remote.name.endswith(".safetensors"):
            server.files[path] = _safetensors(b"\x00" * 64)
        else:
            server.files[path] = b"PK\x03\x04" + b"\x00" * 60


def test_command_prints_licence_and_fetches_registry_files(tmp_path, server):
    _serve_entry(server, "da3-small")
    result = subprocess.run(
        [sys.executable, "-m", "mde_ros.cli", "download", "da3-small", "--mirror", server.url,
         "--weights-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=REPO, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "licence Apache-2.0" in result.stdout
    assert result.stdout.index("licence") < result.stdout.index("model.safetensors")  # licence first
    assert sorted(p.name for p in (tmp_path / "da3-small").iterdir()) == ["config.json", "model.safetensors"]


def test_non_commercial_model_asks_and_yes_accepts(tmp_path, server):
    _serve_entry(server, "depth-anything-v2-large")
    assert get_entry("depth-anything-v2-large").non_commercial
    with pytest.raises(DownloadError, match="--yes"):
        download_model("depth-anything-v2-large", tmp_path, confirm=lambda q: False, mirror=server.url)
    assert not any((tmp_path / "depth-anything-v2-large").glob("*.pth"))
    asked = []
    paths = download_model(
        "depth-anything-v2-large", tmp_path, confirm=lambda q: asked.append(q) or True, mirror=server.url
    )
    assert "CC-BY-NC-4.0" in asked[0] and paths[0].name == "depth_anything_v2_vitl.pth"
