from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ember.core.errors import ConfigError, DownloadError
from ember.data import external
from ember.data.external import (
    URLs,
    download_images,
    download_url,
    ember_home,
    resize_images,
    untar_data,
    verify_images,
)

# ---------------------------------------------------------------------------------------------------------------------
# A local file server that understands Range requests and can cut a response short.


@dataclass
class FileServer:
    base: str
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    cut_after: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before dropping the connection
    ranges: bool = True

    def url(self, path: str) -> str:
        return self.base + path


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (the name http.server dispatches to)
        state: FileServer = self.server.state  # type: ignore[attr-defined]
        range_header = self.headers.get("Range")
        state.requests.append((self.path, range_header))
        body = state.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        if range_header and state.ranges:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        cut = state.cut_after.pop(self.path, None)
        if cut is not None:
            # Promise the whole body, send part of it, and hang up: what a dropped connection looks like.
            self.wfile.write(payload[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # keep the test output clean
        pass


@pytest.fixture
def server() -> Iterator[FileServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    state = FileServer(base=f"http://127.0.0.1:{httpd.server_address[1]}")
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EMBER_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------------------------------
# Archives built in the test


def make_tar(files: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def png_bytes(w: int = 8, h: int = 6, seed: int = 0) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(w: int = 8, h: int = 6) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 30, 30)).save(buf, format="JPEG")
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------------------------------
# URLs and the cache folder


def test_ember_home_reads_the_variable_at_call_time(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ember_home() == home
    monkeypatch.setenv("EMBER_HOME", "/somewhere/else")
    assert ember_home() == Path("/somewhere/else")
    monkeypatch.delenv("EMBER_HOME")
    assert ember_home() == Path("~/.ember").expanduser()


def test_urls_constants_and_local_paths(home: Path) -> None:
    assert URLs.S3 == "https://s3.amazonaws.com/fast-ai-"
    assert URLs.MNIST_TINY == "https://s3.amazonaws.com/fast-ai-sample/mnist_tiny.tgz"
    assert URLs.PETS == "https://s3.amazonaws.com/fast-ai-imageclas/oxford-iiit-pet.tgz"
    assert URLs.CAMVID_TINY.endswith("fast-ai-sample/camvid_tiny.tgz")
    assert URLs.WT103_FWD == "https://s3.amazonaws.com/fast-ai-modelzoo/wt103-fwd.tgz"
    bases = {"LOCAL_PATH", "MDL", "GOOGLE", "S3", "URL"}
    archives = {k: v for k, v in vars(URLs).items() if k.isupper() and k not in bases and not k.startswith("S3_")}
    assert len(archives) > 50
    assert all(v.startswith("http") and v.endswith((".tgz", ".zip")) for v in archives.values())
    assert URLs.path(URLs.MNIST_TINY) == home / "archive" / "mnist_tiny.tgz"
    assert URLs.path(URLs.ML_100k, kind="data") == home / "data" / "ml-100k"
    with pytest.raises(ConfigError, match="kind"):
        URLs.path(URLs.PETS, kind="models")


# ---------------------------------------------------------------------------------------------------------------------
# download_url


def test_download_with_checksums(server: FileServer, tmp_path: Path) -> None:
    body = bytes(range(256)) * 40
    server.files["/f.bin"] = body
    sha, md5 = hashlib.sha256(body).hexdigest(), hashlib.md5(body).hexdigest()
    out = download_url(server.url("/f.bin"), tmp_path / "a" / "f.bin", checksum=f"sha256:{sha}", chunk_size=1000)
    assert out == tmp_path / "a" / "f.bin"
    assert out.read_bytes() == body
    assert not (tmp_path / "a" / "f.bin.part").exists()
    # An existing folder as `dest` takes the URL's file name.
    assert download_url(server.url("/f.bin"), tmp_path / "a", checksum=f"MD5:{md5.upper()}") == out


def test_checksum_mismatch_removes_the_file(server: FileServer, tmp_path: Path) -> None:
    server.files["/f.bin"] = b"the real content"
    wrong = "sha256:" + "0" * 64
    with pytest.raises(DownloadError, match="checksum mismatch") as info:
        download_url(server.url("/f.bin"), tmp_path / "f.bin", checksum=wrong)
    assert server.url("/f.bin") in str(info.value)
    assert not (tmp_path / "f.bin").exists()
    assert not (tmp_path / "f.bin.part").exists()


@pytest.mark.parametrize("bad", ["abc", "sha256:xyz", "sha1:" + "0" * 40, "md5:" + "0" * 31])
def test_malformed_checksum_is_a_config_error(bad: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="checksum"):
        download_url("http://127.0.0.1:1/x", tmp_path / "x", checksum=bad)


def test_interrupted_download_resumes_with_a_range_request(server: FileServer, tmp_path: Path) -> None:
    body = np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    server.files["/big.bin"] = body
    server.cut_after["/big.bin"] = 20_000
    dest = tmp_path / "big.bin"
    with pytest.raises(DownloadError, match="call again to resume"):
        download_url(server.url("/big.bin"), dest, chunk_size=4096)
    assert not dest.exists()
    assert (tmp_path / "big.bin.part").stat().st_size == 20_000

    out = download_url(server.url("/big.bin"), dest, checksum="sha256:" + hashlib.sha256(body).hexdigest())
    assert out.read_bytes() == body
    assert server.requests == [("/big.bin", None), ("/big.bin", "bytes=20000-")]
    assert not (tmp_path / "big.bin.part").exists()


def test_server_without_ranges_restarts_from_zero(server: FileServer, tmp_path: Path) -> None:
    server.ranges = False
    server.files["/f.bin"] = b"0123456789" * 100
    (tmp_path / "f.bin.part").write_bytes(b"garbage")
    out = download_url(server.url("/f.bin"), tmp_path / "f.bin")
    assert out.read_bytes() == b"0123456789" * 100
    assert server.requests[0][1] == "bytes=7-"


def test_partial_file_longer_than_the_resource_restarts(server: FileServer, tmp_path: Path) -> None:
    server.files["/f.bin"] = b"short"
    (tmp_path / "f.bin.part").write_bytes(b"a much longer stale partial file")
    assert download_url(server.url("/f.bin"), tmp_path / "f.bin").read_bytes() == b"short"
    assert [r for _, r in server.requests] == ["bytes=32-", None]


def test_no_network_message_is_one_line_with_url_and_path(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/x.tgz"
    with pytest.raises(DownloadError) as info:
        download_url(url, tmp_path / "x.tgz", timeout=5)
    message = str(info.value)
    assert message.startswith(f"no network; download {url} to {tmp_path / 'x.tgz'} yourself")
    assert "\n" not in message
    with pytest.raises(DownloadError, match="no network") as info:
        untar_data(url)
    assert url in str(info.value)


def test_http_error_names_url_and_status(server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"download of .*/missing.tgz failed: HTTP 404"):
        download_url(server.url("/missing.tgz"), tmp_path / "m.tgz")


# ---------------------------------------------------------------------------------------------------------------------
# untar_data


def test_untar_downloads_extracts_and_caches(server: FileServer, home: Path) -> None:
    server.files["/tiny.tgz"] = make_tar({"tiny_folder/a.txt": b"A", "tiny_folder/sub/b.txt": b"B"})
    url = server.url("/tiny.tgz")
    path = untar_data(url)
    # One top-level folder in the archive: its contents are the result, no extra nesting.
    assert path == home / "data" / "tiny"
    assert (path / "a.txt").read_bytes() == b"A"
    assert (path / "sub" / "b.txt").read_bytes() == b"B"
    assert (home / "archive" / "tiny.tgz").exists()
    assert not [p for p in (home / "data").iterdir() if p.name.startswith(".")]  # no temporary folder left

    assert untar_data(url) == path
    assert len(server.requests) == 1  # the second call used the cache

    # A damaged copy is repaired by force_download, which fetches the archive again.
    (path / "a.txt").unlink()
    assert untar_data(url, force_download=True) == path
    assert (path / "a.txt").read_bytes() == b"A"
    assert len(server.requests) == 2


def test_untar_re_extracts_from_the_cached_archive_offline(home: Path) -> None:
    archive = home / "archive" / "flat.zip"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(make_zip({"x.txt": b"X", "y/z.txt": b"Z"}))
    url = f"http://127.0.0.1:{closed_port()}/flat.zip"  # never contacted
    path = untar_data(url)
    assert path == home / "data" / "flat"
    assert (path / "x.txt").read_bytes() == b"X"
    assert (path / "y" / "z.txt").read_bytes() == b"Z"


def test_untar_with_custom_folders_and_checksum(server: FileServer, tmp_path: Path) -> None:
    data = make_tar({"t/a.txt": b"hello"}, mode="w")  # plain .tar, detected by content
    server.files["/plain.tar"] = data
    sha = hashlib.sha256(data).hexdigest()
    path = untar_data(server.url("/plain.tar"), data=tmp_path / "d", archive=tmp_path / "a", checksum=f"sha256:{sha}")
    assert path == tmp_path / "d" / "plain"
    assert (path / "a.txt").read_text() == "hello"
    assert (tmp_path / "a" / "plain.tar").exists()


def test_untar_checksum_mismatch(server: FileServer, home: Path) -> None:
    server.files["/t.tgz"] = make_tar({"t/a.txt": b"a"})
    with pytest.raises(DownloadError, match="checksum mismatch"):
        untar_data(server.url("/t.tgz"), checksum="md5:" + "f" * 32)
    assert not (home / "data" / "t").exists()
    assert not (home / "archive" / "t.tgz").exists()


def test_damaged_archive_says_to_force_download(home: Path) -> None:
    archive = home / "archive" / "bad.tgz"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"this is not an archive at all")
    with pytest.raises(DownloadError, match="force_download=True"):
        untar_data("http://127.0.0.1:1/bad.tgz")
    assert not (home / "data" / "bad").exists()


def _place_archive(home: Path, name: str, data: bytes) -> str:
    archive = home / "archive" / name
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.write_bytes(data)
    return f"http://127.0.0.1:1/{name}"


@pytest.mark.parametrize("use_filter", [True, False])
def test_tar_traversal_is_refused(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_filter: bool
) -> None:
    monkeypatch.setattr(external, "_HAS_TAR_FILTER", use_filter and external._HAS_TAR_FILTER)
    url = _place_archive(home, "dots.tgz", make_tar({"ok.txt": b"fine", "../evil.txt": b"pwned"}))
    with pytest.raises(DownloadError, match=r"'\.\./evil\.txt'"):
        untar_data(url)
    assert not (home / "data" / "evil.txt").exists()
    assert not (home / "data" / "dots").exists()

    absolute = str(tmp_path / "abs_evil.txt")
    url = _place_archive(home, "abs.tgz", make_tar({absolute: b"pwned"}))
    with pytest.raises(DownloadError, match="abs_evil.txt"):
        untar_data(url)
    assert not Path(absolute).exists()


@pytest.mark.parametrize("use_filter", [True, False])
def test_tar_links_inside_are_kept_and_outside_refused(
    home: Path, monkeypatch: pytest.MonkeyPatch, use_filter: bool
) -> None:
    monkeypatch.setattr(external, "_HAS_TAR_FILTER", use_filter and external._HAS_TAR_FILTER)

    def tar_with_link(link_target: str) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            info = tarfile.TarInfo("pkg/real.txt")
            info.size = 4
            tar.addfile(info, io.BytesIO(b"real"))
            link = tarfile.TarInfo("pkg/sub/link.txt")
            link.type = tarfile.SYMTYPE
            link.linkname = link_target
            tar.addfile(link)
        return buf.getvalue()

    path = untar_data(_place_archive(home, "good.tgz", tar_with_link("../real.txt")))
    assert (path / "sub" / "link.txt").read_text() == "real"

    with pytest.raises(DownloadError, match="link 'pkg/sub/link.txt' points outside"):
        untar_data(_place_archive(home, "evil_link.tgz", tar_with_link("../../../etc/passwd")))
    with pytest.raises(DownloadError, match="points outside"):
        untar_data(_place_archive(home, "abs_link.tgz", tar_with_link("/etc/passwd")))


def test_zip_traversal_is_refused(home: Path) -> None:
    url = _place_archive(home, "evil.zip", make_zip({"a.txt": b"a", "sub/../../evil.txt": b"pwned"}))
    with pytest.raises(DownloadError, match="evil.txt"):
        untar_data(url)
    assert not (home / "data" / "evil.txt").exists()
    assert not (home / "data" / "evil").exists()


# ---------------------------------------------------------------------------------------------------------------------
# Folders of images


def test_download_images_skips_bad_urls_and_numbers_files(server: FileServer, tmp_path: Path) -> None:
    png, jpg = png_bytes(), jpeg_bytes()
    server.files["/img/one.png"] = png
    server.files["/img/two.JPG"] = jpg
    server.files["/img/three?size=big"] = jpg
    urls = [server.url("/img/one.png"), server.url("/img/missing.png"), server.url("/img/two.JPG"), ""]
    with pytest.warns(UserWarning, match="1 of 3 images could not be downloaded"):
        paths = download_images(urls, tmp_path / "imgs", max_workers=3)
    assert [p.name for p in paths] == ["00000000.png", "00000002.jpg"]
    assert paths[0].read_bytes() == png
    assert paths[1].read_bytes() == jpg
    assert sorted(p.name for p in (tmp_path / "imgs").iterdir()) == ["00000000.png", "00000002.jpg"]

    # A second batch continues the numbering; a URL without an image extension is saved as .jpg.
    more = download_images([server.url("/img/three?size=big"), server.url("/img/one.png")], tmp_path / "imgs", 1)
    assert [p.name for p in more] == ["00000003.jpg"]


@pytest.mark.parametrize("n_workers", [0, 2])
def test_verify_images_finds_corrupt_files(tmp_path: Path, n_workers: int) -> None:
    good = []
    for i in range(4):
        p = tmp_path / f"good{i}.png"
        p.write_bytes(png_bytes(seed=i))
        good.append(p)
    truncated = tmp_path / "truncated.png"
    full = png_bytes(64, 64, seed=9)
    truncated.write_bytes(full[: len(full) // 2])
    not_an_image = tmp_path / "text.jpg"
    not_an_image.write_text("hello")
    paths = [good[0], truncated, good[1], good[2], not_an_image, good[3]]
    assert verify_images(paths, n_workers=n_workers) == [truncated, not_an_image]
    assert verify_images([str(p) for p in good], n_workers=n_workers) == []


def test_resize_images_shrinks_and_mirrors(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "a").mkdir(parents=True)
    (src / "b" / "deep").mkdir(parents=True)
    Image.new("RGB", (200, 100), (10, 200, 30)).save(src / "a" / "wide.png")
    Image.new("RGB", (50, 300), (10, 200, 30)).save(src / "b" / "deep" / "tall.jpg")
    small = src / "b" / "small.jpg"
    small.write_bytes(jpeg_bytes(30, 20))
    (src / "top.PNG").write_bytes(png_bytes(120, 120))
    (src / "a" / "broken.png").write_bytes(b"not a png")
    (src / "notes.txt").write_text("ignored")

    with pytest.warns(UserWarning, match="1 of 5 images could not be read"):
        out = resize_images(src, 64, dst, max_workers=2)
    assert sorted(p.relative_to(dst).as_posix() for p in out) == [
        "a/wide.png",
        "b/deep/tall.jpg",
        "b/small.jpg",
        "top.PNG",
    ]
    with Image.open(dst / "a" / "wide.png") as im:
        assert im.size == (64, 32)
    with Image.open(dst / "b" / "deep" / "tall.jpg") as im:
        assert im.size[1] == 64 and im.size[0] in (10, 11)
    assert (dst / "b" / "small.jpg").read_bytes() == small.read_bytes()  # already small: copied untouched
    assert not (dst / "a" / "broken.png").exists()
    assert not (dst / "notes.txt").exists()


def test_resize_images_top_level_only_and_new_extension(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    Image.new("RGBA", (80, 40), (1, 2, 3, 128)).save(src / "x.png")
    Image.new("RGB", (80, 40)).save(src / "sub" / "y.png")
    out = resize_images(src, 20, tmp_path / "dst", max_workers=0, recurse=False, ext="jpg")
    assert out == [tmp_path / "dst" / "x.jpg"]
    with Image.open(out[0]) as im:
        assert im.format == "JPEG" and im.size == (20, 10) and im.mode == "RGB"


def test_resize_images_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_size"):
        resize_images(tmp_path, 0, tmp_path / "d")
    with pytest.raises(ConfigError, match="ext"):
        resize_images(tmp_path, 10, tmp_path / "d", ext=".txt")
    with pytest.raises(ConfigError, match="existing folder"):
        resize_images(tmp_path / "nope", 10, tmp_path / "d")
