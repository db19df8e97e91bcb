"""download fetches, verifies, resumes and extracts archives; tested against a loopback HTTP server."""

import hashlib
import io
import random
import socket
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from labkit import download as download_module
from labkit.download import DownloadError, download

OFFICIAL_FOLDER = "https://www.robots.ox.ac.uk/~vgg/data/pets/data"
PHOTO_BYTES = random.Random(0).randbytes(50_000)  # incompressible, so the archive is ~50 kB


def make_archive(path: Path, files: dict[str, bytes]) -> bytes:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path.read_bytes()


class ArchiveHandler(BaseHTTPRequestHandler):
    """Serves `server.files`, honours `Range: bytes=N-` unless `server.ignore_range`, records
    every request, and plays `server.faults` ("503" or "drop" mid-body) on the first requests."""

    def do_GET(self):
        server = self.server
        name, range_header = self.path.lstrip("/"), self.headers.get("Range")
        server.requests.append((name, range_header))
        fault = server.faults.pop(0) if server.faults else None
        if name not in server.files or fault == "503":
            self.send_error(404 if fault is None else 503)
            return
        data, start = server.files[name], 0
        if range_header and not server.ignore_range:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if fault == "drop" else body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ArchiveHandler)
    httpd.files, httpd.requests, httpd.faults, httpd.ignore_range = {}, [], [], False
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/data"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def resources(server, tmp_path, monkeypatch) -> list[tuple[str, str]]:
    """Two small archives laid out like the real ones, served under /data/, with official URLs."""
    monkeypatch.delenv("LABKIT_DATASET_URL", raising=False)
    monkeypatch.setattr(download_module, "RETRY_DELAY_SECONDS", 0.0)
    contents = {
        "images.tar.gz": {"images/Cat_1.jpg": PHOTO_BYTES},
        "annotations.tar.gz": {"annotations/trainval.txt": b"Cat_1 1 1 1\n"},
    }
    pairs = []
    for archive_name, files in contents.items():
        data = make_archive(tmp_path / archive_name, files)
        server.files[f"data/{archive_name}"] = data
        pairs.append((f"{OFFICIAL_FOLDER}/{archive_name}", hashlib.md5(data).hexdigest()))
    return pairs


def fetch(root: Path, server, resources, **options) -> Path:
    return download(root, base_url=server.url, resources=resources, progress=False, timeout=5, **options)


def test_downloads_verifies_and_extracts_every_archive(tmp_path, server, resources):
    root = fetch(tmp_path / "pets", server, resources)
    assert (root / "images" / "Cat_1.jpg").read_bytes() == PHOTO_BYTES
    assert (root / "annotations" / "trainval.txt").read_text() == "Cat_1 1 1 1\n"
    assert [name for name, _ in server.requests] == ["data/images.tar.gz", "data/annotations.tar.gz"]
    assert not list(root.glob("*.part"))


def test_base_url_can_come_from_the_environment(tmp_path, server, resources, monkeypatch):
    monkeypatch.setenv("LABKIT_DATASET_URL", server.url)
    root = download(tmp_path / "pets", resources=resources, progress=False, timeout=5)
    assert (root / "annotations" / "trainval.txt").is_file()


def test_second_call_downloads_nothing(tmp_path, server, resources):
    fetch(tmp_path / "pets", server, resources)
    requests_after_first_call = len(server.requests)
    fetch(tmp_path / "pets", server, resources)
    assert len(server.requests) == requests_after_first_call


def test_checksum_mismatch_raises_and_leaves_no_archive(tmp_path, server, resources):
    wrong = [(url, "0" * 32) for url, _ in resources]
    with pytest.raises(DownloadError, match="Checksum mismatch"):
        fetch(tmp_path / "pets", server, wrong)
    assert not (tmp_path / "pets" / "images.tar.gz").exists()
    assert not (tmp_path / "pets" / "images.tar.gz.part").exists()


def test_partial_download_resumes_with_a_range_request(tmp_path, server, resources):
    data = server.files["data/images.tar.gz"]
    root = tmp_path / "pets"
    root.mkdir()
    (root / "images.tar.gz.part").write_bytes(data[:30_000])
    fetch(root, server, resources[:1])
    assert server.requests == [("data/images.tar.gz", "bytes=30000-")]
    assert (root / "images.tar.gz").read_bytes() == data


def test_server_that_ignores_range_restarts_from_scratch(tmp_path, server, resources):
    server.ignore_range = True
    root = tmp_path / "pets"
    root.mkdir()
    (root / "images.tar.gz.part").write_bytes(b"stale bytes from another file")
    fetch(root, server, resources[:1])
    assert (root / "images.tar.gz").read_bytes() == server.files["data/images.tar.gz"]


def test_dropped_connection_is_retried_and_resumed(tmp_path, server, resources):
    server.faults = ["drop"]
    root = fetch(tmp_path / "pets", server, resources[:1], retries=2)
    half = len(server.files["data/images.tar.gz"]) // 2
    assert server.requests == [("data/images.tar.gz", None), ("data/images.tar.gz", f"bytes={half}-")]
    assert (root / "images.tar.gz").read_bytes() == server.files["data/images.tar.gz"]


def test_interrupted_download_is_never_left_under_the_final_name(tmp_path, server, resources):
    server.faults = ["drop"]
    with pytest.raises(DownloadError):
        fetch(tmp_path / "pets", server, resources[:1], retries=1)
    assert not (tmp_path / "pets" / "images.tar.gz").exists()
    assert (tmp_path / "pets" / "images.tar.gz.part").is_file()


def test_server_error_is_retried(tmp_path, server, resources):
    server.faults = ["503"]
    root = fetch(tmp_path / "pets", server, resources[:1], retries=2)
    assert (root / "images" / "Cat_1.jpg").is_file()


def test_missing_file_fails_at_once_with_the_http_status(tmp_path, server, resources):
    missing = [(f"{OFFICIAL_FOLDER}/nothing.tar.gz", "0" * 32)]
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(tmp_path / "pets", server, missing, retries=3)
    assert len(server.requests) == 1


def test_unreachable_server_raises_a_one_line_error_quickly(tmp_path, resources):
    with socket.socket() as probe:  # a port that was just free and now has no listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(DownloadError) as caught:
        download(tmp_path / "pets", base_url=f"http://127.0.0.1:{port}/data", resources=resources,
                 progress=False, retries=2, timeout=2)
    message = str(caught.value)
    assert "\n" not in message
    assert f"http://127.0.0.1:{port}/data/images.tar.gz" in message
    assert f"check your connection or download the archives by hand into {tmp_path / 'pets'}" in message
    assert time.monotonic() - started < 5
