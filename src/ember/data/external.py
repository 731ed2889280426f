"""Data from elsewhere: the public fast.ai dataset URLs, a resumable checked download, safe archive extraction,
and helpers to download, check and shrink folders of images.

Everything is cached under :func:`ember_home` (``$EMBER_HOME``, by default ``~/.ember``): archives in
``archive/``, extracted data in ``data/``. A second ``untar_data`` call for the same URL touches no network.

>>> path = untar_data(URLs.MNIST_TINY)  # doctest: +SKIP
>>> sorted(p.name for p in path.iterdir())  # doctest: +SKIP
['labels.csv', 'models', 'test', 'train', 'valid']
"""

from __future__ import annotations

import hashlib
import http.client
import os
import posixpath
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path, PurePosixPath, PureWindowsPath

from ember._version import __version__
from ember.core.errors import ConfigError, DownloadError, expected
from ember.core.parallel import parallel, progress_enabled

__all__ = [
    "URLs",
    "ember_home",
    "download_url",
    "untar_data",
    "download_images",
    "verify_images",
    "resize_images",
]

_USER_AGENT = f"ember/{__version__} (+python urllib)"
_ARCHIVE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tbz2", ".txz", ".tar", ".zip")
_IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
# Python 3.12 (and the 3.10.12+/3.11.4+ security releases) ship tarfile's extraction filters.
_HAS_TAR_FILTER = hasattr(tarfile, "data_filter")


def ember_home() -> Path:
    """The folder where ember keeps downloads and data: ``$EMBER_HOME`` if set, else ``~/.ember``.

    The variable is read on every call, so changing it at run time takes effect at once.
    """
    return Path(os.environ.get("EMBER_HOME") or "~/.ember").expanduser()


def _url_filename(url: str) -> str:
    """The last path component of a URL, without query or fragment (``.../a/b.tgz?x=1`` -> ``b.tgz``)."""
    name = posixpath.basename(urllib.parse.urlparse(url).path)
    if not name:
        raise ConfigError(expected("a URL that ends with a file name", "url", url))
    return name


def _archive_stem(name: str) -> str:
    """``mnist_tiny.tgz`` -> ``mnist_tiny``; ``ml-100k.zip`` -> ``ml-100k``; other names lose their last suffix."""
    lowered = name.lower()
    for suffix in _ARCHIVE_SUFFIXES:
        if lowered.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem or name


class URLs:
    """The public fast.ai dataset and model archives, under the names fastai users know.

    Pass one to :func:`untar_data`; :meth:`URLs.path` says where it is kept locally.
    """

    LOCAL_PATH = Path.cwd()
    MDL = "http://files.fast.ai/models/"
    GOOGLE = "https://storage.googleapis.com/"
    S3 = "https://s3.amazonaws.com/fast-ai-"
    URL = f"{S3}sample/"

    S3_IMAGE = f"{S3}imageclas/"
    S3_IMAGELOC = f"{S3}imagelocal/"
    S3_AUDI = f"{S3}audio/"
    S3_NLP = f"{S3}nlp/"
    S3_COCO = f"{S3}coco/"
    S3_MODEL = f"{S3}modelzoo/"

    # Small samples, good for a first try.
    ADULT_SAMPLE = f"{URL}adult_sample.tgz"
    BIWI_SAMPLE = f"{URL}biwi_sample.tgz"
    CAMVID_TINY = f"{URL}camvid_tiny.tgz"
    CIFAR = f"{URL}cifar10.tgz"
    DOGS = f"{URL}dogscats.tgz"
    HUMAN_NUMBERS = f"{URL}human_numbers.tgz"
    IMDB_SAMPLE = f"{URL}imdb_sample.tgz"
    ML_SAMPLE = f"{URL}movie_lens_sample.tgz"
    MNIST_SAMPLE = f"{URL}mnist_sample.tgz"
    MNIST_TINY = f"{URL}mnist_tiny.tgz"
    PLANET_SAMPLE = f"{URL}planet_sample.tgz"
    PLANET_TINY = f"{URL}planet_tiny.tgz"

    # Image classification.
    CALTECH_101 = f"{S3_IMAGE}caltech_101.tgz"
    CARS = f"{S3_IMAGE}stanford-cars.tgz"
    CIFAR_100 = f"{S3_IMAGE}cifar100.tgz"
    CUB_200_2011 = f"{S3_IMAGE}CUB_200_2011.tgz"
    FLOWERS = f"{S3_IMAGE}oxford-102-flowers.tgz"
    FOOD = f"{S3_IMAGE}food-101.tgz"
    IMAGENETTE = f"{S3_IMAGE}imagenette2.tgz"
    IMAGENETTE_160 = f"{S3_IMAGE}imagenette2-160.tgz"
    IMAGENETTE_320 = f"{S3_IMAGE}imagenette2-320.tgz"
    IMAGEWANG = f"{S3_IMAGE}imagewang.tgz"
    IMAGEWANG_160 = f"{S3_IMAGE}imagewang-160.tgz"
    IMAGEWANG_320 = f"{S3_IMAGE}imagewang-320.tgz"
    IMAGEWOOF = f"{S3_IMAGE}imagewoof2.tgz"
    IMAGEWOOF_160 = f"{S3_IMAGE}imagewoof2-160.tgz"
    IMAGEWOOF_320 = f"{S3_IMAGE}imagewoof2-320.tgz"
    LSUN_BEDROOMS = f"{S3_IMAGE}bedroom.tgz"
    MNIST = f"{S3_IMAGE}mnist_png.tgz"
    MNIST_VAR_SIZE_TINY = f"{S3_IMAGE}mnist_var_size_tiny.tgz"
    PETS = f"{S3_IMAGE}oxford-iiit-pet.tgz"

    # Localization, segmentation and detection.
    BIWI_HEAD_POSE = f"{S3_IMAGELOC}biwi_head_pose.tgz"
    CAMVID = f"{S3_IMAGELOC}camvid.tgz"
    COCO_SAMPLE = f"{S3_COCO}coco_sample.tgz"
    COCO_TINY = f"{S3_COCO}coco_tiny.tgz"
    PASCAL_2007 = f"{S3_IMAGELOC}pascal_2007.tgz"
    PASCAL_2012 = f"{S3_IMAGELOC}pascal_2012.tgz"
    SIIM_SMALL = f"{S3_IMAGELOC}siim_small.tgz"
    TCGA_SMALL = f"{S3_IMAGELOC}tcga_small.tgz"

    # Text.
    AG_NEWS = f"{S3_NLP}ag_news_csv.tgz"
    AMAZON_REVIEWS = f"{S3_NLP}amazon_review_full_csv.tgz"
    AMAZON_REVIEWS_POLARITY = f"{S3_NLP}amazon_review_polarity_csv.tgz"
    DBPEDIA = f"{S3_NLP}dbpedia_csv.tgz"
    IMDB = f"{S3_NLP}imdb.tgz"
    MT_ENG_FRA = f"{S3_NLP}giga-fren.tgz"
    SOGOU_NEWS = f"{S3_NLP}sogou_news_csv.tgz"
    WIKITEXT = f"{S3_NLP}wikitext-103.tgz"
    WIKITEXT_TINY = f"{S3_NLP}wikitext-2.tgz"
    YAHOO_ANSWERS = f"{S3_NLP}yahoo_answers_csv.tgz"
    YELP_REVIEWS = f"{S3_NLP}yelp_review_full_csv.tgz"
    YELP_REVIEWS_POLARITY = f"{S3_NLP}yelp_review_polarity_csv.tgz"

    # Tabular and recommendation.
    ML_100k = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"

    # Audio.
    MACAQUES = f"{GOOGLE}ml-animal-sounds-datasets/macaques.zip"
    ZEBRA_FINCH = f"{GOOGLE}ml-animal-sounds-datasets/zebra_finch.zip"

    # Pretrained weights.
    OPENAI_TRANSFORMER = f"{S3_MODEL}transformer.tgz"
    WT103_FWD = f"{S3_MODEL}wt103-fwd.tgz"
    WT103_BWD = f"{S3_MODEL}wt103-bwd.tgz"

    @staticmethod
    def path(url: str, kind: str = "archive") -> Path:
        """Where ``url`` is kept locally.

        Args:
            url: An archive URL, e.g. ``URLs.PETS``.
            kind: ``"archive"`` for the downloaded file (``<home>/archive/oxford-iiit-pet.tgz``) or ``"data"``
                for the extracted folder (``<home>/data/oxford-iiit-pet``).

        Raises:
            ConfigError: ``kind`` is neither, or the URL does not end with a file name.
        """
        name = _url_filename(url)
        if kind == "archive":
            return ember_home() / "archive" / name
        if kind == "data":
            return ember_home() / "data" / _archive_stem(name)
        raise ConfigError(expected("one of the local kinds", "kind", kind, valid=("archive", "data")))


# ---------------------------------------------------------------------------------------------------------------------
# Download


def _parse_checksum(checksum: str | None) -> tuple[str, str] | None:
    if checksum is None:
        return None
    algo, sep, digest = str(checksum).partition(":")
    algo = algo.lower()
    digest = digest.strip().lower()
    valid_hex = bool(digest) and all(c in "0123456789abcdef" for c in digest)
    sizes = {"sha256": 64, "md5": 32}
    if not sep or algo not in sizes or not valid_hex or len(digest) != sizes[algo]:
        raise ConfigError(
            expected("'sha256:<64 hex digits>' or 'md5:<32 hex digits>'", "checksum", checksum, hint=None)
        )
    return algo, digest


def _file_digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _no_network(url: str, dest: Path, reason: object) -> DownloadError:
    reason_text = " ".join(str(reason).split())  # one line, whatever the OS put in the message
    return DownloadError(f"no network; download {url} to {dest} yourself ({reason_text})")


def _open(url: str, offset: int, timeout: float, dest: Path) -> http.client.HTTPResponse:
    """Open ``url`` (from byte ``offset`` when > 0), turning every failure into a one-line DownloadError."""
    headers = {"User-Agent": _USER_AGENT}
    if offset > 0:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (the caller chose the URL)
    except urllib.error.HTTPError as e:  # before URLError: it is a subclass of it
        e.close()
        if e.code == 416 and offset > 0:
            raise  # the partial file is no prefix of this resource; the caller restarts from zero
        raise DownloadError(f"download of {url} failed: HTTP {e.code} {e.reason}") from e
    except (OSError, http.client.HTTPException) as e:  # URLError, DNS failure, refused, timeout, reset
        reason = getattr(e, "reason", e)
        raise _no_network(url, dest, reason) from e


def _content_range_start(value: str | None) -> int | None:
    """``bytes 100-199/200`` -> 100; None when absent or unreadable."""
    if not value:
        return None
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


@contextmanager
def _byte_progress(total: int | None, completed: int, desc: str, enabled: bool) -> Iterator:
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(desc, total=total, completed=completed)
        yield lambda n: bar.advance(task, n)


def download_url(
    url: str,
    dest: str | os.PathLike,
    show_progress: bool = True,
    chunk_size: int = 1 << 20,
    checksum: str | None = None,
    timeout: float = 30,
) -> Path:
    """Download ``url`` to the file ``dest``, resuming an interrupted download and checking it if asked.

    Bytes go to ``<dest>.part``; a ``.part`` left by an earlier, interrupted call is continued with an HTTP
    Range request (or restarted when the server does not support ranges). The finished file is renamed to
    ``dest`` in one step, so ``dest`` is never half written.

    Args:
        url: An ``http(s)://`` (or ``file://``) URL.
        dest: The file to write; when it is an existing folder, the URL's file name is used inside it.
        show_progress: Draw a progress bar when the console is a terminal or a notebook.
        chunk_size: Bytes read at a time.
        checksum: ``"sha256:<hex>"`` or ``"md5:<hex>"`` to verify the finished file against.
        timeout: Seconds to wait for the server before giving up.

    Returns:
        The path of the downloaded file.

    Raises:
        DownloadError: No network (the message says where to put the file by hand), an HTTP error, an
            interrupted transfer (call again to resume), or a checksum mismatch (the bad file is removed).
        ConfigError: ``checksum`` is not in one of the two forms above.
    """
    expected_digest = _parse_checksum(checksum)
    dest = Path(dest)
    if dest.is_dir():
        dest = dest / _url_filename(url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0

    try:
        response = _open(url, offset, timeout, dest)
    except urllib.error.HTTPError:  # 416: what we have is not a prefix of this file; start again
        part.unlink(missing_ok=True)
        offset = 0
        response = _open(url, 0, timeout, dest)

    with response:
        status = getattr(response, "status", 200) or 200
        length = response.headers.get("Content-Length")
        if status == 206:
            if offset == 0 or _content_range_start(response.headers.get("Content-Range")) not in (offset, None):
                part.unlink(missing_ok=True)
                raise DownloadError(f"download of {url} failed: the server sent a range that was not asked for")
            mode = "ab"
        else:
            mode, offset = "wb", 0  # the server ignored the range (or none was asked): the whole file comes
        total = offset + int(length) if length and length.isdigit() else None
        written = offset
        enabled = progress_enabled(show_progress)
        try:
            with open(part, mode) as f, _byte_progress(total, offset, dest.name, enabled) as advance:
                while True:
                    block = response.read(chunk_size)
                    if not block:
                        break
                    f.write(block)
                    written += len(block)
                    advance(len(block))
        except (OSError, http.client.HTTPException) as e:
            raise DownloadError(
                f"download of {url} was interrupted after {written} of {total or '?'} bytes; "
                f"call again to resume ({type(e).__name__}: {e})"
            ) from e
    if total is not None and written != total:
        raise DownloadError(f"download of {url} was interrupted after {written} of {total} bytes; call again to resume")

    if expected_digest is not None:
        algo, digest = expected_digest
        actual = _file_digest(part, algo)
        if actual != digest:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"checksum mismatch for {url}: expected {algo}:{digest}, got {algo}:{actual}; "
                "the downloaded file was removed. Check the checksum, or the URL serves a different file now."
            )
    os.replace(part, dest)
    return dest


# ---------------------------------------------------------------------------------------------------------------------
# Extraction


def _is_unsafe_name(name: str) -> bool:
    """Whether an archive member name is absolute or climbs out of the folder it is extracted into."""
    if not name:
        return False
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(name).drive or PureWindowsPath(name).is_absolute():
        return True
    depth = 0
    for part in posix.parts:
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in (".", ""):
            depth += 1
    return False


def _check_tar_member(member: tarfile.TarInfo, archive: Path) -> None:
    if _is_unsafe_name(member.name):
        raise DownloadError(f"refusing to extract {archive}: member {member.name!r} would land outside the folder")
    if member.issym() or member.islnk():
        # A symlink's target is relative to the link's folder; a hard link's to the archive root.
        base = posixpath.dirname(member.name) if member.issym() else ""
        target = posixpath.join(base, member.linkname)
        if posixpath.isabs(member.linkname) or _is_unsafe_name(target):
            raise DownloadError(
                f"refusing to extract {archive}: link {member.name!r} points outside the folder ({member.linkname!r})"
            )
    elif not (member.isfile() or member.isdir()):
        raise DownloadError(f"refusing to extract {archive}: member {member.name!r} is a device or fifo")


def _extract_tar(archive: Path, target: Path) -> None:
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        for member in members:
            _check_tar_member(member, archive)
        if _HAS_TAR_FILTER:
            try:
                tar.extractall(target, members=members, filter="data")
            except tarfile.FilterError as e:
                raise DownloadError(f"refusing to extract {archive}: {e}") from e
        else:
            # Without filters, also drop ownership and setuid bits, as the "data" filter would.
            for member in members:
                member.uid = member.gid = 0
                member.uname = member.gname = ""
                if member.isfile() or member.isdir():
                    member.mode &= 0o755
            tar.extractall(target, members=members)


def _extract_zip(archive: Path, target: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if _is_unsafe_name(info.filename):
                raise DownloadError(
                    f"refusing to extract {archive}: member {info.filename!r} would land outside the folder"
                )
        zf.extractall(target)


def _extract(archive: Path, target: Path) -> None:
    """Extract a zip or tar (any compression) into ``target``, refusing members that would escape it."""
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, target)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, target)
        else:
            raise DownloadError(
                f"{archive} is neither a tar nor a zip archive; remove it or call untar_data(..., force_download=True)"
            )
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
        raise DownloadError(
            f"{archive} is damaged ({type(e).__name__}: {e}); call untar_data(..., force_download=True)"
        ) from e


def untar_data(
    url: str,
    data: str | os.PathLike | None = None,
    archive: str | os.PathLike | None = None,
    force_download: bool = False,
    checksum: str | None = None,
) -> Path:
    """Download an archive (unless cached) and extract it (unless already extracted); return the data folder.

    The folder is ``<data>/<archive name without .tgz/.tar.gz/.zip>``. When the archive holds a single
    top-level folder, that folder becomes the result (no extra level of nesting). Extraction goes to a
    temporary folder that is renamed when complete, so an interrupted call leaves nothing half done.

    Args:
        url: The archive's URL, e.g. ``URLs.MNIST_TINY``.
        data: Folder to extract into; defaults to ``<ember_home()>/data``.
        archive: Folder to keep the downloaded archive in; defaults to ``<ember_home()>/archive``.
        force_download: Download and extract again even when cached.
        checksum: ``"sha256:<hex>"`` or ``"md5:<hex>"`` that the archive must match.

    Returns:
        The extracted folder.

    Raises:
        DownloadError: No network, HTTP error, checksum mismatch, a damaged archive, or an archive member that
            would be written outside the folder (absolute path, ``..``, or a link pointing out).
    """
    expected_digest = _parse_checksum(checksum)
    name = _url_filename(url)
    archive_dir = Path(archive).expanduser() if archive is not None else ember_home() / "archive"
    data_dir = Path(data).expanduser() if data is not None else ember_home() / "data"
    archive_path = archive_dir / name
    dest = data_dir / _archive_stem(name)

    if force_download:
        archive_path.unlink(missing_ok=True)
        archive_path.with_name(archive_path.name + ".part").unlink(missing_ok=True)
        if dest.exists():
            shutil.rmtree(dest)
    if dest.exists():
        return dest

    if archive_path.exists() and expected_digest is not None:
        algo, digest = expected_digest
        if _file_digest(archive_path, algo) != digest:
            archive_path.unlink()  # a stale or damaged copy; fetch it again
    if not archive_path.exists():
        download_url(url, archive_path, checksum=checksum)

    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / f".{dest.name}.extracting-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        _extract(archive_path, tmp)
        entries = list(tmp.iterdir())
        if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
            os.replace(entries[0], dest)
        else:
            os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dest


# ---------------------------------------------------------------------------------------------------------------------
# Folders of images


def _image_files(path: Path, recurse: bool = True) -> list[Path]:
    """The image files under ``path`` (by extension, case-insensitive), sorted so runs are reproducible."""
    pattern = path.rglob("*") if recurse else path.glob("*")
    return sorted(p for p in pattern if p.suffix.lower() in _IMAGE_EXTENSIONS and p.is_file())


def _image_name(index: int, url: str) -> str:
    suffix = Path(urllib.parse.urlparse(url).path).suffix.lower()
    return f"{index:08d}{suffix if suffix in _IMAGE_EXTENSIONS else '.jpg'}"


def _fetch_image(job: tuple[str, Path], timeout: float) -> Path | None:
    url, target = job
    part = target.with_name(target.name + ".part")
    try:
        request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
        with urllib.request.urlopen(request, timeout=timeout) as response, open(part, "wb") as f:  # noqa: S310
            shutil.copyfileobj(response, f)
        os.replace(part, target)
        return target
    except (OSError, ValueError, http.client.HTTPException):  # a bad URL is skipped, not fatal
        part.unlink(missing_ok=True)
        return None


def download_images(
    urls: Iterable[str],
    dest: str | os.PathLike,
    max_pics: int | None = None,
    max_workers: int = 8,
    timeout: float = 10,
) -> list[Path]:
    """Download image URLs into ``dest`` as ``00000000.jpg``, ``00000001.png``, … with a pool of threads.

    Numbering continues after the highest number already in ``dest``, so a second batch does not overwrite
    the first. The URL's extension is kept when it is an image one (``.jpg`` otherwise). URLs that fail are
    skipped and counted in one warning; run :func:`verify_images` afterwards to catch files that are not images.

    Args:
        urls: Image URLs; blank entries are ignored.
        dest: Folder to write into (created if needed).
        max_pics: Download at most this many (the first ones).
        max_workers: Threads downloading at once.
        timeout: Seconds to wait for each server.

    Returns:
        The files written, in the order of ``urls``.
    """
    if max_pics is not None and (not isinstance(max_pics, int) or max_pics < 0):
        raise ConfigError(expected("None or an int >= 0", "max_pics", max_pics))
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    url_list = [u.strip() for u in urls if u and u.strip()]
    if max_pics is not None:
        url_list = url_list[:max_pics]
    numbers = [int(p.stem) for p in dest.iterdir() if p.stem.isdigit() and len(p.stem) == 8]
    start = max(numbers) + 1 if numbers else 0
    jobs = [(u, dest / _image_name(start + i, u)) for i, u in enumerate(url_list)]
    results = parallel(
        partial(_fetch_image, timeout=timeout),
        jobs,
        n_workers=max_workers,
        threadpool=True,
        desc="download_images",
    )
    paths = [p for p in results if p is not None]
    failed = len(jobs) - len(paths)
    if failed:
        warnings.warn(f"{failed} of {len(jobs)} images could not be downloaded and were skipped", stacklevel=2)
    return paths


def _cannot_open(path: Path) -> bool:
    """True when Pillow cannot open, verify and fully decode ``path``."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.verify()  # checks structure (e.g. PNG CRCs) without decoding
        with Image.open(path) as img:
            img.load()  # verify() misses truncated pixel data; decoding catches it
    except Exception:  # any failure means the file is unusable, whatever Pillow raised
        return True
    return False


def verify_images(paths: Iterable[str | os.PathLike], n_workers: int | None = None) -> list[Path]:
    """Return the files among ``paths`` that Pillow cannot open, verify and decode.

    >>> bad = verify_images(get_image_files(path))  # doctest: +SKIP
    >>> for p in bad: p.unlink()  # doctest: +SKIP
    """
    path_list = [Path(p) for p in paths]
    broken = parallel(_cannot_open, path_list, n_workers=n_workers, desc="verify_images")
    return [p for p, bad in zip(path_list, broken, strict=True) if bad]


def _resize_one(job: tuple[Path, Path], max_size: int) -> bool:
    """Write a copy of ``src`` at ``dst`` whose longer side is at most ``max_size``; False when unreadable."""
    from PIL import Image

    src, dst = job
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(src) as img:
            img.load()
            too_big = max(img.size) > max_size
            if not too_big and src.suffix.lower() == dst.suffix.lower():
                if src.resolve() != dst.resolve():
                    shutil.copyfile(src, dst)  # already small: keep the original bytes, no re-encoding
                return True
            out = img.copy()
        if too_big:
            out.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)  # keeps the aspect ratio
        if dst.suffix.lower() in (".jpg", ".jpeg") and out.mode not in ("RGB", "L"):
            out = out.convert("RGB")  # JPEG has no alpha or palette
        out.save(dst)
        return True
    except Exception:  # an unreadable image is counted and skipped
        return False


def resize_images(
    path: str | os.PathLike,
    max_size: int,
    dest: str | os.PathLike,
    max_workers: int | None = None,
    recurse: bool = True,
    ext: str | None = None,
) -> list[Path]:
    """Copy the images under ``path`` into ``dest``, shrinking any whose longer side exceeds ``max_size``.

    The folder structure is mirrored (``path/a/b.jpg`` -> ``dest/a/b.jpg``); the aspect ratio is kept and
    images are never enlarged. Files that cannot be read are skipped with one warning.

    Args:
        path: Folder of images.
        max_size: Largest allowed side in pixels.
        dest: Output folder.
        max_workers: Worker processes; ``None`` uses every core, ``0`` runs in this process.
        recurse: Include subfolders.
        ext: Save in another format, e.g. ``".png"``; by default each file keeps its own extension.

    Returns:
        The files written, in sorted source order.
    """
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
        raise ConfigError(expected("a positive int", "max_size", max_size))
    if ext is not None:
        ext = ext if ext.startswith(".") else f".{ext}"
        if ext.lower() not in _IMAGE_EXTENSIONS:
            raise ConfigError(expected("an image extension", "ext", ext, valid=sorted(_IMAGE_EXTENSIONS)))
    src_root, dst_root = Path(path), Path(dest)
    if not src_root.is_dir():
        raise ConfigError(expected("an existing folder", "path", str(src_root)))
    jobs = []
    for src in _image_files(src_root, recurse=recurse):
        dst = dst_root / src.relative_to(src_root)
        jobs.append((src, dst.with_suffix(ext) if ext else dst))
    done = parallel(partial(_resize_one, max_size=max_size), jobs, n_workers=max_workers, desc="resize_images")
    failed = [src for (src, _), ok in zip(jobs, done, strict=True) if not ok]
    if failed:
        warnings.warn(
            f"{len(failed)} of {len(jobs)} images could not be read and were skipped (first: {failed[0]})",
            stacklevel=2,
        )
    return [dst for (_, dst), ok in zip(jobs, done, strict=True) if ok]
