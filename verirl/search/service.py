"""The retriever behind the search tools, in-process or over HTTP, with one interface.

* :class:`LocalRetriever` wraps a :class:`~verirl.search.text_index.TextIndex` and an
  :class:`~verirl.search.image_index.ImageIndex` in this process; :func:`open_retriever` builds them once per process.
* :func:`serve` puts the same retriever behind HTTP so that N training processes and remote rollout hosts share one
  index (one copy of the embeddings in memory, one encoder) instead of building it N times.
* :class:`RemoteRetriever` is the client: same methods, same :class:`~verirl.search.corpus.Hit` results.

The protocol is JSON over HTTP::

    GET  /health        -> {"ok": true, "corpus": name, "passages": n, "images": m}
    POST /text_search   {"query": str, "k": int}        -> {"hits": [{"title", "text", "score"}, ...]}
    POST /image_search  {"image_b64": str, "k": int}    -> {"hits": [...]}   (base64 of PNG/JPEG/... file bytes)

A bad request gets status 400 (413 if the body is too large, 404 for an unknown path) and ``{"error": one line}``;
the server never dies on a request. ``k`` must be in 1..50 (:data:`MAX_K`), in the local retriever too, so that both
behave alike.

Our design choice: the server is the standard library's :class:`http.server.ThreadingHTTPServer` — no extra
dependency, and JSON over POST is all it needs; a thread per request suits a service whose work is a few
milliseconds of numpy (dense query encoding is serialised by the text index's lock). The client is
:mod:`urllib.request` for the same reason. It logs one line per request, at debug level only.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verirl.errors import VerirlError, first_line
from verirl.search.corpus import BUILTIN_CORPUS, Hit

if TYPE_CHECKING:
    import numpy as np

    from verirl.search.image_index import ImageIndex
    from verirl.search.text_index import TextIndex

log = logging.getLogger(__name__)

MAX_K = 50
MAX_QUERY_CHARS = 4096
MAX_BODY_BYTES = 32 * 1024 * 1024  # a base64 image of up to ~24 MB


def check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise VerirlError(f"k: expected an integer in 1..{MAX_K}, got {k!r}")
    return k


def check_query(query: Any) -> str:
    if not isinstance(query, str):
        raise VerirlError(f"query: expected a string, got {type(query).__name__}")
    if len(query) > MAX_QUERY_CHARS:
        raise VerirlError(f"query: too long ({len(query)} characters; at most {MAX_QUERY_CHARS})")
    return query


class LocalRetriever:
    """Text and image search in this process. Either index may be None (its search then raises VerirlError)."""

    def __init__(self, text_index: TextIndex | None, image_index: ImageIndex | None):
        self.text_index = text_index
        self.image_index = image_index

    def text_search(self, query: str, k: int = 3) -> list[Hit]:
        check_k(k)
        check_query(query)
        if self.text_index is None:
            raise VerirlError("text search: this retriever has no text index")
        return self.text_index.search(query, k)

    def image_search(self, image: str | Path | bytes | np.ndarray, k: int = 3) -> list[Hit]:
        check_k(k)
        if self.image_index is None:
            raise VerirlError("image search: this retriever has no image index")
        return self.image_index.search(image, k)

    def health(self) -> dict[str, Any]:
        text = self.text_index
        return {
            "ok": True,
            "corpus": text.corpus.name if text is not None else None,
            "passages": len(text) if text is not None else 0,
            "images": len(self.image_index) if self.image_index is not None else 0,
        }


_LOCAL: dict[tuple[str, str, int | None], LocalRetriever] = {}
_LOCAL_LOCK = threading.Lock()


def build_local(corpus: str = BUILTIN_CORPUS, images: str = "flags", limit: int | None = None) -> LocalRetriever:
    """Build the indexes: ``corpus`` is ``wiki-vital`` or a JSONL file (its first ``limit`` passages if given);
    ``images`` is ``flags``, a JSONL collection, or ``none``."""
    from verirl.search.corpus import load_corpus
    from verirl.search.image_index import ImageIndex
    from verirl.search.text_index import TextIndex

    passages = load_corpus(corpus)
    if limit is not None:
        if limit < 1:
            raise VerirlError(f"limit: expected a positive number of passages, got {limit}")
        passages = passages.head(limit)
    if images == "flags":
        image_index = ImageIndex.flags(passages)
    elif images in ("", "none"):
        image_index = None
    else:
        image_index = ImageIndex.from_jsonl(images, passages)
    return LocalRetriever(TextIndex(passages), image_index)


def open_retriever(
    url: str | None, corpus: str = BUILTIN_CORPUS, images: str = "flags", limit: int | None = None
) -> LocalRetriever | RemoteRetriever:
    """A client of the service at ``url``; or, when ``url`` is None, local indexes built once per process and
    shared by every caller with the same arguments."""
    if url:
        return RemoteRetriever(url)
    key = (corpus, images, limit)
    with _LOCAL_LOCK:
        if key not in _LOCAL:
            _LOCAL[key] = build_local(corpus, images, limit)
        return _LOCAL[key]


class RemoteRetriever:
    """The client of :func:`serve`: ``text_search`` / ``image_search`` over HTTP. Errors raise VerirlError (one line,
    naming the URL); a 400 carries the server's reason."""

    def __init__(self, url: str, timeout_s: float = 10.0):
        if not url.startswith(("http://", "https://")):
            raise VerirlError(f"retriever url {url!r}: expected http://HOST:PORT")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"RemoteRetriever({self.url!r})"

    def text_search(self, query: str, k: int = 3) -> list[Hit]:
        return self._hits(self._call("/text_search", {"query": query, "k": k}))

    def image_search(self, image: str | Path | bytes | np.ndarray, k: int = 3) -> list[Hit]:
        return self._hits(
            self._call("/image_search", {"image_b64": base64.b64encode(_image_bytes(image)).decode(), "k": k})
        )

    def health(self) -> dict[str, Any]:
        return self._call("/health", None)

    def _call(self, path: str, payload: dict[str, Any] | None) -> Any:
        url = self.url + path
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            raise VerirlError(f"retriever {url}: {_error_line(exc)}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise VerirlError(f"retriever {url}: unreachable ({first_line(reason)})") from None
        try:
            return json.loads(body)
        except ValueError:
            raise VerirlError(f"retriever {url}: the reply is not JSON") from None

    def _hits(self, reply: Any) -> list[Hit]:
        try:
            return [Hit(str(h["title"]), str(h["text"]), float(h["score"])) for h in reply["hits"]]
        except (KeyError, TypeError, ValueError):
            raise VerirlError(f"retriever {self.url}: malformed reply (expected {{'hits': [...]}})") from None


def _error_line(exc: urllib.error.HTTPError) -> str:
    try:
        message = json.loads(exc.read()).get("error")
    except (ValueError, AttributeError, OSError):
        message = None
    return f"{exc.code} {first_line(message) if message else exc.reason}"


def _image_bytes(image: str | Path | bytes | np.ndarray) -> bytes:
    """The bytes to send: a file's own bytes, given bytes, or an array encoded as PNG (lossless)."""
    if isinstance(image, (bytes, bytearray)):
        return bytes(image)
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise VerirlError(f"{path}: no such image file")
        try:
            return path.read_bytes()
        except OSError as exc:
            raise VerirlError(f"{path}: cannot read the image ({exc.strerror or first_line(exc)})") from None
    from verirl.search.image_index import open_image

    buf = io.BytesIO()
    open_image(image).save(buf, "PNG")
    return buf.getvalue()


class _BadRequest(Exception):
    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST):
        super().__init__(message)
        self.status = status


class _Handler(BaseHTTPRequestHandler):
    server: _RetrieverServer
    server_version = "verirl-retriever"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.split("?", 1)[0] == "/health":
            self._reply(HTTPStatus.OK, self.server.retriever.health())
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"unknown path {self.path}: GET /health"})

    def do_POST(self) -> None:  # noqa: N802
        try:
            route = self.path.split("?", 1)[0]
            if route not in ("/text_search", "/image_search"):
                raise _BadRequest(
                    f"unknown path {self.path}: POST /text_search or /image_search", HTTPStatus.NOT_FOUND
                )
            request = self._json_body()
            k = request.get("k", 3)
            retriever = self.server.retriever
            if route == "/text_search":
                if "query" not in request:
                    raise _BadRequest("missing field 'query' (a string)")
                hits = retriever.text_search(request["query"], check_k(k))
            else:
                hits = retriever.image_search(_decode_image(request), check_k(k))
            self._reply(HTTPStatus.OK, {"hits": [{"title": h.title, "text": h.text, "score": h.score} for h in hits]})
        except _BadRequest as exc:
            self._reply(exc.status, {"error": first_line(exc)})
        except VerirlError as exc:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": first_line(exc)})
        except Exception as exc:  # never let one request take the service down
            log.exception("retriever: %s failed", self.path)
            self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error: {first_line(exc)}"})

    def _json_body(self) -> dict[str, Any]:
        length = self.headers.get("Content-Length")
        if length is None or not length.strip().isdigit():
            raise _BadRequest("missing Content-Length: send a JSON object body", HTTPStatus.LENGTH_REQUIRED)
        n = int(length)
        if n > MAX_BODY_BYTES:
            self.close_connection = True
            raise _BadRequest(
                f"body too large ({n} bytes; at most {MAX_BODY_BYTES})", HTTPStatus.REQUEST_ENTITY_TOO_LARGE
            )
        raw = self.rfile.read(n)
        try:
            request = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _BadRequest(f"the body is not JSON ({first_line(exc)})") from None
        if not isinstance(request, dict):
            raise _BadRequest("expected a JSON object body")
        return request

    def _reply(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            log.debug("retriever: client went away before the reply to %s", self.path)


def _decode_image(request: dict[str, Any]) -> bytes:
    data = request.get("image_b64")
    if not isinstance(data, str) or not data:
        raise _BadRequest("missing field 'image_b64' (base64 of PNG or JPEG file bytes)")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _BadRequest("image_b64: not valid base64") from None


class _RetrieverServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], retriever: LocalRetriever):
        self.retriever = retriever
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def make_server(
    host: str, port: int, text_index: TextIndex | None, image_index: ImageIndex | None
) -> _RetrieverServer:
    """A bound, not yet serving, server (port 0 picks a free one: see ``.url``). Call ``serve_forever()``."""
    return _RetrieverServer((host, port), LocalRetriever(text_index, image_index))


def serve(
    host: str,
    port: int,
    text_index: TextIndex | None,
    image_index: ImageIndex | None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until interrupted; ``on_ready(url)`` is called once it listens. Raises OSError if it cannot bind."""
    server = make_server(host, port, text_index, image_index)
    try:
        if on_ready is not None:
            on_ready(server.url)
        server.serve_forever()
    finally:
        server.server_close()
