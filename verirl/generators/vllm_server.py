"""vLLM in another process or on another host: ``verirl serve MODEL`` and the client (``backend: vllm-server``).

Why our own small server and not vLLM's OpenAI server or ``trl vllm-serve``: the trainer must push new weights
after every step. TRL's server takes them only over NCCL (a CUDA device on both ends); vLLM's OpenAI server can
reload only from a path on the server's own disk (its dev-mode ``/collective_rpc``). Here the weights travel in the
request body (safetensors bytes) and the engine loads them in memory with the same ``reload_weights`` path as the
colocated backend, so CPU and GPU hosts, with or without a shared disk, work alike.

Protocol (JSON unless stated): ``GET /health`` -> ``{status, model, weights_version}``;
``POST /generate`` ``{prompt_ids, n, sampling}`` -> ``{completion_ids, logprobs}``;
``POST /weights`` (body: safetensors bytes) -> ``{tensors, seconds, weights_version}``. Errors: HTTP 4xx/5xx with
``{error}``. One request runs on the engine at a time; ``/health`` always answers.

Every client call has a timeout; an unreachable, dead or hung server is one clear :class:`VerirlError`, not a hang.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from verirl.errors import VerirlError
from verirl.generators.base import SamplingParams
from verirl.generators.vllm import EngineOptions, TokenIdGenerator, first_line

# ------------------------------------------------------------------------------------------------ server


def serve(model: str, host: str = "127.0.0.1", port: int = 8000, options: EngineOptions | None = None) -> None:
    """Start the engine, then answer requests until interrupted (``verirl serve``)."""
    from verirl.generators.vllm import VLLMGenerator

    generator = VLLMGenerator(model, options=options)
    server = make_server(generator, host, port)
    print(
        f"verirl serve: {model} ready on http://{host}:{server.server_address[1]} "
        f"(engine start {generator.startup_seconds:.0f} s)",
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()


def make_server(generator: Any, host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server around any object with ``generate_ids``, ``load_weights`` and ``weights_version``."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # one line per request is noise at training rates
            pass

        def do_GET(self) -> None:
            if self.path != "/health":
                return self._reply(404, {"error": f"no such endpoint: GET {self.path}"})
            self._reply(200, {"status": "ok", "model": generator.model, "weights_version": generator.weights_version})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                if self.path == "/generate":
                    request = json.loads(body)
                    sampling = SamplingParams(**request.get("sampling", {}))
                    with lock:
                        ids, logprobs = generator.generate_ids(request["prompt_ids"], int(request["n"]), sampling)
                    return self._reply(200, {"completion_ids": ids, "logprobs": logprobs})
                if self.path == "/weights":
                    from safetensors.torch import load

                    start = time.time()
                    tensors = load(body)
                    with lock:
                        generator.load_weights(tensors.items())
                    return self._reply(
                        200,
                        {
                            "tensors": len(tensors),
                            "seconds": round(time.time() - start, 3),
                            "weights_version": generator.weights_version,
                        },
                    )
                self._reply(404, {"error": f"no such endpoint: POST {self.path}"})
            except (KeyError, TypeError, ValueError) as exc:
                self._reply(400, {"error": f"bad request to {self.path}: {type(exc).__name__}: {exc}"})
            except Exception as exc:  # noqa: BLE001 - the engine's failure goes back to the client as one line
                self._reply(500, {"error": first_line(exc)})

        def _reply(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


# ------------------------------------------------------------------------------------------------ client


class VLLMServerGenerator(TokenIdGenerator):
    """:class:`~verirl.generators.base.Generator` backed by a ``verirl serve`` process at ``url``.

    ``timeout_s`` bounds every request (a generation batch, a weight push); ``connect_timeout_s`` bounds the
    health check. ``wait_s`` > 0 waits that long for a server that is still starting.
    """

    shared = True

    def __init__(
        self,
        url: str,
        tokenizer: Any,
        timeout_s: float = 600.0,
        connect_timeout_s: float = 10.0,
        wait_s: float = 0.0,
    ):
        if not url.startswith(("http://", "https://")):
            raise VerirlError(f"generator.url: expected http://HOST:PORT, got {url!r}")
        self.url = url.rstrip("/")
        self.tokenizer = tokenizer
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.info = self.wait_until_ready(wait_s)

    # -- HTTP ------------------------------------------------------------------------------------------------

    def _request(self, what: str, path: str, data: bytes | None, timeout: float, content_type: str) -> dict:
        request = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read()).get("error", "")
            except (ValueError, OSError):
                detail = exc.reason
            raise VerirlError(f"vLLM server {self.url}: {what} failed (HTTP {exc.code}): {detail}") from None
        except TimeoutError:
            raise self._timed_out(what, timeout) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise self._timed_out(what, timeout) from None
            raise VerirlError(
                f"generator.url: no vLLM server reachable at {self.url} ({exc.reason}); "
                f"start one with `verirl serve MODEL --port PORT`"
            ) from None
        except (http.client.HTTPException, ConnectionError) as exc:
            raise VerirlError(
                f"vLLM server {self.url}: connection lost during {what} ({type(exc).__name__}); "
                "did the server die? see its log"
            ) from None

    def _timed_out(self, what: str, timeout: float) -> VerirlError:
        knob = " (generator.timeout_s)" if timeout == self.timeout_s else ""
        return VerirlError(f"vLLM server {self.url}: no answer to {what} within {timeout:g} s{knob}")

    def _post_json(self, what: str, path: str, payload: dict[str, Any]) -> dict:
        return self._request(what, path, json.dumps(payload).encode(), self.timeout_s, "application/json")

    def health(self) -> dict:
        return self._request("the health check", "/health", None, self.connect_timeout_s, "application/json")

    def wait_until_ready(self, wait_s: float) -> dict:
        deadline = time.time() + wait_s
        while True:
            try:
                return self.health()
            except VerirlError:
                if time.time() >= deadline:
                    raise
                time.sleep(min(2.0, max(0.0, deadline - time.time())))

    # -- Generator --------------------------------------------------------------------------------------------

    @property
    def weights_version(self) -> int:
        return int(self.health()["weights_version"])

    def generate_ids(
        self, prompt_ids: list[list[int]], n: int = 1, sampling: SamplingParams | None = None
    ) -> tuple[list[list[list[int]]], list[list[list[float]]]]:
        sampling = sampling or SamplingParams()
        payload = {
            "prompt_ids": [list(map(int, p)) for p in prompt_ids],
            "n": n,
            "sampling": dataclasses.asdict(sampling),
        }
        reply = self._post_json(f"generate ({len(prompt_ids)} prompts x {n})", "/generate", payload)
        return reply["completion_ids"], reply["logprobs"]

    def load_weights(self, weights: Iterable[tuple[str, Any]]) -> dict:
        """Send tensors (all or a subset) to the server, which loads them in place."""
        from safetensors.torch import save

        body = save(_unshared(weights))
        return self._request(
            f"the weight push ({len(body) / 2**20:.0f} MiB)",
            "/weights",
            body,
            self.timeout_s,
            "application/octet-stream",
        )

    def close(self) -> None:
        pass


def _unshared(weights: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """safetensors refuses tensors that share memory (tied embeddings): later sharers are copied."""
    seen: set[int] = set()
    out = {}
    for name, tensor in weights:
        tensor = tensor.detach().cpu().contiguous()
        ptr = tensor.untyped_storage().data_ptr()
        out[name] = tensor.clone() if ptr in seen else tensor
        seen.add(ptr)
    return out
