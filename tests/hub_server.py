"""A small local stand-in for the part of the Hugging Face Hub HTTP API that `create_repo` and `upload_folder` use.

Implemented: POST /api/repos/create, GET /api/models/{repo}, POST /api/validate-yaml,
POST /api/models/{repo}/preupload/{rev} (every file
"regular", i.e. sent inline), POST /api/models/{repo}/commit/{rev} (NDJSON with base64 file contents).
It checks the bearer token, stores committed files in memory, and can fail the first N requests with a status.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote


class FakeHub:
    def __init__(self, token: str = "hf_test_token"):
        self.token = token
        self.repos: dict[str, dict] = {}  # repo_id -> {"private": bool, "files": {path: bytes}, "commits": [..]}
        self.requests: list[tuple[str, str]] = []
        self.validated: list[str] = []  # README contents sent to /api/validate-yaml
        self.fail_next: list[int] = []  # statuses to return for the next requests, in order
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: dict | None = None) -> None:
                data = json.dumps(body or {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _guard(self) -> bool:
                hub.requests.append((self.command, self.path))
                body = self._body()
                self._payload = body
                if hub.fail_next:
                    self._send(hub.fail_next.pop(0), {"error": "injected failure"})
                    return False
                if self.headers.get("Authorization") != f"Bearer {hub.token}":
                    self._send(401, {"error": "Invalid credentials in Authorization header"})
                    return False
                return True

            def do_GET(self):
                if not self._guard():
                    return
                path = unquote(self.path.split("?")[0])
                if path.startswith("/api/models/"):
                    repo = path[len("/api/models/") :].split("/revision/")[0]
                    if repo in hub.repos:
                        info = hub.repos[repo]
                        return self._send(
                            200,
                            {
                                "id": repo,
                                "private": info["private"],
                                "sha": "0" * 40,
                                "siblings": [{"rfilename": f} for f in info["files"]],
                            },
                        )
                return self._send(404, {"error": "Repository not found"})

            def do_POST(self):
                if not self._guard():
                    return
                path = unquote(self.path.split("?")[0])
                if path == "/api/repos/create":
                    payload = json.loads(self._payload)
                    repo = (
                        f"{payload['organization']}/{payload['name']}"
                        if payload.get("organization")
                        else payload["name"]
                    )
                    if repo in hub.repos:
                        return self._send(409, {"error": "You already created this model repo"})
                    hub.repos[repo] = {
                        "private": payload.get("visibility") == "private" or payload.get("private", False),
                        "files": {},
                        "commits": [],
                    }
                    return self._send(200, {"url": f"{hub.url}/{repo}", "name": repo})
                if path == "/api/validate-yaml":  # the README's metadata block must be valid YAML
                    import yaml

                    content = json.loads(self._payload).get("content", "")
                    hub.validated.append(content)
                    try:
                        front = content.split("---", 2)[1] if content.startswith("---") else ""
                        yaml.safe_load(front)
                    except (IndexError, yaml.YAMLError) as exc:
                        return self._send(400, {"errors": [{"message": str(exc)}]})
                    return self._send(200, {"errors": [], "warnings": []})
                if path.startswith("/api/models/") and "/preupload/" in path:
                    repo = path[len("/api/models/") :].split("/preupload/")[0]
                    if repo not in hub.repos:
                        return self._send(404, {"error": "Repository not found"})
                    files = json.loads(self._payload)["files"]
                    return self._send(
                        200,
                        {
                            "files": [
                                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
                            ]
                        },
                    )
                if path.startswith("/api/models/") and "/commit/" in path:
                    repo = path[len("/api/models/") :].split("/commit/")[0]
                    if repo not in hub.repos:
                        return self._send(404, {"error": "Repository not found"})
                    header, files = None, {}
                    for line in self._payload.decode().splitlines():
                        item = json.loads(line)
                        if item["key"] == "header":
                            header = item["value"]
                        elif item["key"] == "file":
                            files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                        else:
                            return self._send(400, {"error": f"unsupported operation {item['key']}"})
                    hub.repos[repo]["files"].update(files)
                    oid = hashlib.sha1(self._payload).hexdigest()
                    hub.repos[repo]["commits"].append({"summary": (header or {}).get("summary"), "oid": oid})
                    return self._send(200, {"commitUrl": f"{hub.url}/{repo}/commit/{oid}", "commitOid": oid})
                return self._send(404, {"error": f"not implemented: {path}"})

        return Handler
