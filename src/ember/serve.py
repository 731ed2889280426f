"""`ember serve`: a web page and a JSON API over an exported model, with the Python standard library only.

:func:`make_server` loads a ``.ember`` file (or takes a loaded learner) and returns an HTTP server that answers:

- ``GET /``: one self-contained page (inline CSS and JavaScript, nothing fetched from elsewhere) suited to the
  model: a file picker for image models, a text area for text models, a form with one field per column for
  tables, user and item fields for ratings;
- ``POST /predict``: JSON in, JSON out (an image model also takes the image file itself as the body);
- ``GET /info``: what ``ember info`` shows, with the kind of model, its classes and its inputs, as JSON.

Bad input (not an image, a missing column, malformed JSON, a body over ``max_bytes``) is answered with status 400
and ``{"error": "<what is wrong>"}``; the server keeps running. Every answer is JSON, errors too: another method
than a path takes is a 405 naming the ones it takes, and a body announced over ``max_bytes`` with
``Expect: 100-continue`` (curl sends it for bodies over 1 MB) is a 413 before the body is sent. The server is
threaded, but one prediction runs at a time on the model. Listening on a loopback address (the default), it answers
only requests addressed to this machine by its loopback name (``Host: 127.0.0.1``, ``localhost`` or ``[::1]``),
so that a web page of another site cannot reach it through a DNS name of its own. :func:`serve` runs it until
Ctrl-C. The kinds of models are told apart, and predictions decoded, as ``ember predict`` does
(:func:`ember.cli._common.learner_kind`).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import os
import socket
import socketserver
import sys
import threading
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ember.core.errors import ConfigError, DataError, EmberError, ExportError, expected
from ember.serve_predict import _Service, _short

__all__ = ["serve", "make_server", "ModelServer"]

#: The largest request body read by default (20 MiB: a large photo, base64-encoded).
MAX_BYTES = 20 * 2**20
#: A body over the limit is still read (and dropped) up to this size, so that the client receives the 400 answer
#: rather than a reset connection; a larger one is not read at all.
_DRAIN_LIMIT = 64 * 2**20
#: The pages and what they answer to.
_ROUTES = {
    "/": ("GET", "HEAD"),
    "/index.html": ("GET", "HEAD"),
    "/info": ("GET", "HEAD"),
    "/favicon.ico": ("GET", "HEAD"),
    "/predict": ("POST",),
}
#: Control characters as the log writes them (``\x1b``), so that no client can send escape codes to the terminal.
_CONTROL = str.maketrans({c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))})


# ---------------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    server: ModelServer
    # HTTP/1.1: connections are kept open between requests (every answer says its length), and a client that asks
    # `Expect: 100-continue` before a large body is answered at once (curl waits a second otherwise)
    protocol_version = "HTTP/1.1"
    timeout = 60  # seconds a client may take to send its request before the connection is dropped

    def version_string(self) -> str:
        from ember._version import __version__

        return f"ember/{__version__}"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        if self.server.log:
            sys.stderr.write(f"{self.address_string()} - {(format % args).translate(_CONTROL)}\n")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's refusals (a malformed request line, headers too long …), as JSON."""
        self.close_connection = True
        self._error(code, message or explain or HTTPStatus(code).phrase)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client went away: nothing to tell it
            self.close_connection = True

    def _json(self, status: int, answer: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(answer, ensure_ascii=False).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8", headers)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._json(status, {"error": message}, headers)

    def _route(self) -> str | None:
        """The request's path when it is answered there; None when it was refused here (a Host that is not this
        machine's, an unknown path, another method), the connection then closed if a body was left unread."""
        path = urlsplit(self.path).path
        allowed = _ROUTES.get(path)
        host = self.headers.get("Host")
        if host is not None and self.server.loopback and not _is_loopback_host(host):
            self._refuse(
                403,
                f"This server listens on {self.server.server_address[0]} and answers only requests addressed to "
                f"this machine (Host 127.0.0.1, localhost or [::1]), not to {_short(host)}: a web page of another "
                "site cannot use it. To be reached by another name, listen on another address (--host).",
            )
        elif allowed is None and self.command == "POST":
            self._refuse(404, f"Nothing to POST at {path}: predictions are at POST /predict.")
        elif allowed is None:
            self._refuse(404, f"No page at {path}. This server answers GET /, GET /info and POST /predict.")
        elif self.command not in allowed:
            methods = " or ".join(allowed)
            self._refuse(
                405,
                f"{self.command} is not answered at {path}: it takes {methods}. This server answers GET /, "
                "GET /info and POST /predict.",
                {"Allow": ", ".join(allowed)},
            )
        else:
            return path
        return None

    def _refuse(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        if self.headers.get("Content-Length", "0").strip() != "0" or "Transfer-Encoding" in self.headers:
            self.close_connection = True  # the body is not read: it must not be taken for the next request
        self._error(status, message, headers)

    def handle_expect_100(self) -> bool:
        """Before the client sends its body: refuse at once what would be refused after it (a body over the
        limit is a 413), else tell it to go on."""
        if self._route() is None:
            self.close_connection = True
            return False
        length = _content_length(self.headers.get("Content-Length"))
        if length is not None and length > self.server.service.max_bytes:
            self.close_connection = True
            self._error(413, _too_large(length, self.server.service.max_bytes))
            return False
        return super().handle_expect_100()

    def do_GET(self) -> None:  # noqa: N802 (the base class's name)
        service = self.server.service
        path = self._route()
        if path in ("/", "/index.html"):
            self._send(200, service.page, "text/html; charset=utf-8")
        elif path == "/info":
            self._json(200, service.info)
        elif path == "/favicon.ico":
            self._send(204, b"", "image/x-icon")

    do_HEAD = do_GET  # the headers a GET answers, without the body (`_send` leaves it out)

    def do_POST(self) -> None:  # noqa: N802 (the base class's name)
        if self._route() is None:
            return
        try:
            body = self._read_body()
            answer = self.server.service.predict(body, self.headers.get("Content-Type", ""))
        except EmberError as e:
            self._error(400, str(e))
        except Exception:  # a failure of ours, not of the input: logged here, never shown to the client
            traceback.print_exc(file=sys.stderr)
            self._error(500, "The model failed on this input (an internal error; the server's log has the details).")
        else:
            self._json(200, answer)

    def _refused_method(self) -> None:
        self._route()  # a 405 naming the methods the path takes (or a 404)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _refused_method

    def _read_body(self) -> bytes:
        """The request body, at most ``max_bytes`` (larger bodies are drained, then refused)."""
        limit = self.server.service.max_bytes
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self.close_connection = True
            raise DataError("The request has no Content-Length header: send the body with its length.")
        length = _content_length(length_text)
        if length is None:
            self.close_connection = True
            raise DataError(expected("a whole number of bytes", "Content-Length", length_text))
        if length > limit:
            self.close_connection = True
            self._drain(length)
            raise DataError(_too_large(length, limit))
        return self.rfile.read(length)

    def _drain(self, length: int) -> None:
        """Read and drop a refused body, so that the client is still reading when the answer comes."""
        if length > _DRAIN_LIMIT:
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 2**20))
            if not chunk:
                return
            length -= len(chunk)


def _content_length(text: str | None) -> int | None:
    """The number a Content-Length header holds; None when there is none, or it is not a whole number >= 0."""
    try:
        length = int(text) if text is not None else -1
    except ValueError:
        return None
    return length if length >= 0 else None


def _too_large(length: int, limit: int) -> str:
    return (
        f"The body holds {length:,} bytes, over this server's limit of {limit:,} (max_bytes). Send a smaller "
        "image (or fewer items per request)."
    )


def _is_loopback_host(host: str) -> bool:
    """Whether a Host header names this machine by a loopback name: ``localhost``, ``127.x.y.z`` or ``[::1]``,
    with or without a port (a DNS name of another site that points here does not)."""
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8000
        name = host[1 : host.find("]")] if "]" in host else host[1:]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.rstrip(".")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class ModelServer(ThreadingHTTPServer):
    """The HTTP server :func:`make_server` returns: run it with ``serve_forever()``, stop it with ``shutdown()``
    (from another thread) and ``server_close()``.

    Attributes:
        service: the model behind it (its ``kind``, its ``info`` as ``GET /info`` answers it, its ``learn``).
        log: whether requests are logged on stderr.
        loopback: whether it listens on a loopback address (this machine only), so that it answers only requests
            addressed to a loopback name.
        max_connections: how many connections are served at once (one thread each); another one is answered
            503 at once and closed, so that stalled clients cannot pile up threads.
    """

    daemon_threads = True  # a hanging client never keeps the process alive
    max_connections = 64

    def __init__(self, address: tuple[str, int], service: _Service, log: bool = False) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.service, self.log = service, log
        self._slots = threading.BoundedSemaphore(self.max_connections)
        super().__init__(address, _Handler)
        try:
            self.loopback = ipaddress.ip_address(str(self.server_address[0]).split("%")[0]).is_loopback
        except ValueError:
            self.loopback = False

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            _refuse_busy(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)  # starts the connection's thread
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks the DNS for the host's full name, which can take seconds; it is not needed
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    @property
    def url(self) -> str:
        """The page's address (``127.0.0.1`` when listening on every interface)."""
        host, port = self.server_address[:2]
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _refuse_busy(request: Any) -> None:
    """Answer 503 (JSON, as every answer) on a connection the server has no thread for, without reading it."""
    body = json.dumps({"error": "The server is busy (too many connections at once); try again shortly."}).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    with contextlib.suppress(OSError):
        request.sendall(head.encode("ascii") + body)


def _load(model: Any, device: Any) -> tuple[Any, dict[str, Any], str | None, Path | None]:
    """``(learner, recipe, name shown, local path)`` of a ``.ember`` file, an ``hf://`` address or a loaded learner,
    on `device` (None: as it is)."""
    if isinstance(model, (str, os.PathLike)):
        from ember.hub import resolve_model_path
        from ember.learner.export import load_learner, read_recipe

        local = resolve_model_path(model)  # an hf:// address: looked up once, so the model and /info agree
        learn = load_learner(local, device="cpu" if device is None else device)
        shown = model if isinstance(model, str) and model.startswith("hf://") else Path(model).name
        return learn, read_recipe(local), shown, local
    if not (hasattr(model, "predict_batch") and hasattr(model, "dls") and hasattr(model, "model")):
        raise ConfigError(expected("a path to a .ember file, or a Learner", "model", type(model).__name__))
    if device is not None:
        from ember.core.device import default_device

        dev = default_device(device)
        model.dls.to(dev)
        model.model.to(dev)
    from ember.learner.export import _learner_recipe

    try:
        rec = _learner_recipe(model)
    except ExportError:  # loaders that cannot be written still serve: /info then shows less of them
        rec = _learner_recipe(model, data=False)
    return model, rec, None, None


def make_server(
    model: str | os.PathLike | Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str | None = None,
    max_bytes: int = MAX_BYTES,
    log: bool = False,
) -> ModelServer:
    """An HTTP server over `model`, listening but not yet answering (for tests and to embed it).

    Args:
        model: a ``.ember`` file or ``hf://user/name[@revision]`` (read with :func:`ember.load_learner`), or a
            loaded learner.
        host: the address to listen on: ``127.0.0.1`` is this machine only; ``0.0.0.0`` is every network
            interface, so that anyone who can reach the machine can use the model (there is no login).
        port: the port; 0 picks a free one (read it from ``server.url``).
        device: where the model runs (``"cpu"``, ``"cuda"``, …); None: the CPU for a file, where it is for a
            learner.
        max_bytes: the largest request body accepted.
        log: print a line per request on stderr.

    Raises:
        ConfigError: a bad argument, a model the server cannot feed (a GAN, several inputs), or an address that
            cannot be listened on (the port is taken, the host is not an address of this machine).

    >>> server = make_server("birds.ember", port=0)                   # doctest: +SKIP
    >>> threading.Thread(target=server.serve_forever, daemon=True).start()  # doctest: +SKIP
    """
    if not isinstance(host, str) or not host:
        raise ConfigError(expected("an address such as '127.0.0.1' or '0.0.0.0'", "host", host))
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(expected("a port number from 0 to 65535 (0: any free port)", "port", port))
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ConfigError(expected("a positive whole number of bytes", "max_bytes", max_bytes))
    learn, rec, shown, local = _load(model, device)
    service = _Service(learn, rec, shown, local, max_bytes)
    try:
        return ModelServer((host, port), service, log=log)
    except OSError as e:
        raise ConfigError(_listen_error(e, host, port)) from e


def _listen_error(e: OSError, host: str, port: int) -> str:
    """Why an address cannot be listened on, and what to change: the host or the port."""
    reason = e.strerror or str(e)
    if isinstance(e, socket.gaierror) or e.errno == errno.EADDRNOTAVAIL:
        return expected(
            "an address of this machine, such as '127.0.0.1' (this machine only) or '0.0.0.0' (every network "
            "interface)",
            "host",
            host,
            hint=f"Cannot listen on it ({reason}).",
        )
    if e.errno == errno.EADDRINUSE:
        return (
            f"Cannot listen on {host}:{port} ({reason}). Choose another port (--port; 0 picks a free one), or stop "
            "the program that holds it."
        )
    if e.errno == errno.EACCES:
        return (
            f"Cannot listen on {host}:{port} ({reason}): ports below 1024 need administrator rights. Choose another "
            "port (--port; 0 picks a free one)."
        )
    return f"Cannot listen on {host}:{port} ({reason})."


def serve(
    model: str | os.PathLike | Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str | None = None,
    max_bytes: int = MAX_BYTES,
    open_browser: bool = False,
) -> None:
    """Serve `model` on a web page and a JSON API until Ctrl-C (see :func:`make_server` for the arguments).

    Args:
        open_browser: open the page in the default web browser.
    """
    server = make_server(model, host=host, port=port, device=device, max_bytes=max_bytes, log=True)
    info = server.service.info
    print(f"Serving {info['name']} ({info['kind']}) at {server.url}  (Ctrl-C stops)")
    if not server.loopback:
        print(f"Listening on {host}: anyone who can reach this machine on port {server.server_address[1]} can use it.")
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("Stopped.")
    finally:
        server.server_close()
