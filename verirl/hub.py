"""Push a finished run to the Hugging Face Hub: model card, then ``create_repo`` + ``upload_folder``.

Honours ``HF_ENDPOINT`` (read at call time, not at import) and ``HF_TOKEN``; retries transient failures (network
errors, 429, 5xx) with exponential backoff; never prints the token; never modifies or deletes the local output.
Checkpoints and crash logs are not uploaded.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from verirl import outputs
from verirl.cards import CardInfo, card_from_output_dir
from verirl.errors import HubError, RecipeError, VerirlError, first_line
from verirl.typecheck import build_dataclass, setting

logger = logging.getLogger("verirl.hub")

IGNORE_PATTERNS = ["checkpoint-*", "checkpoint-*/**", "error.log", "*.tmp", ".verirl-*"]
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}

T = TypeVar("T")


@dataclass
class HubSpec:
    """A recipe's ``hub:`` section: push the finished run (model, card, recipe, metrics) to the Hub."""

    push: bool = setting(False, help="push when training has finished")
    repo_id: str | None = setting(None, help="owner/name of the model repository (required with push)")
    private: bool = setting(True, help="create the repository private")
    revision: str | None = setting(None, help="a branch to push to (created if missing)")


def build_hub_spec(value: Any, file: str) -> HubSpec:
    spec = build_dataclass(HubSpec, value if value is not None else {}, file, "hub.")
    if spec.push and not spec.repo_id:
        raise RecipeError(file, "hub.repo_id", "required when hub.push is true (e.g. me/my-model)")
    return spec


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _is_transient(exc: BaseException) -> bool:
    status = _status(exc)
    if status is not None:
        return status in _RETRY_STATUS
    if type(exc).__name__ == "OfflineModeIsEnabled":  # HF_HUB_OFFLINE=1: retrying cannot help
        return False
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    # huggingface_hub's HTTP client (httpx2 in recent releases, httpx before): resets, timeouts, protocol errors.
    for module in ("httpx2", "httpx"):
        try:
            transport_error = __import__(module).TransportError
        except (ImportError, AttributeError):
            continue
        if isinstance(exc, transport_error):
            return True
    return False


def _scrub(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


def with_retries(
    action: Callable[[], T], what: str, token: str | None, attempts: int = 4, backoff_s: float = 1.0
) -> T:
    """Run ``action``; retry transient errors with exponential backoff; raise HubError (token scrubbed) otherwise."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - classified below
            status = _status(exc)
            message = _scrub(first_line(exc), token)
            if status in (401, 403):
                raise HubError(
                    f"{what}: not authorised (HTTP {status}); set HF_TOKEN to a token with write access"
                ) from None
            if not _is_transient(exc) or attempt == attempts:
                raise HubError(f"{what} failed after {attempt} attempt(s): {message}") from None
            delay = backoff_s * 2 ** (attempt - 1)
            logger.warning("%s failed (%s); retrying in %.1f s (%d/%d)", what, message, delay, attempt, attempts)
            time.sleep(delay)
    raise AssertionError("unreachable")


def push_folder(
    output_dir: str | Path,
    repo_id: str,
    private: bool = True,
    revision: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    attempts: int = 4,
    backoff_s: float = 1.0,
    commit_message: str = "Upload model trained with verirl",
    model_files: tuple[str, ...] = ("config.json", "adapter_config.json"),
    card: CardInfo | None = None,
) -> str:
    """Write/refresh the model card, create the repo if needed and upload the run. Returns the repo URL.
    ``model_files``: the files of which one marks a finished run (its trainer's declaration says which)."""
    from huggingface_hub import HfApi

    out = Path(output_dir)
    if not out.is_dir():
        raise VerirlError(f"push: {out} is not a directory")
    if not any((out / name).is_file() for name in model_files):
        raise VerirlError(f"push: {out} holds no model ({' or '.join(model_files)}); is the run finished?")
    token = token or os.environ.get("HF_TOKEN") or None
    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    api = HfApi(endpoint=endpoint, token=token)
    retry_hint = f"the local output in {out} is untouched; retry with: verirl push {out} --repo-id {repo_id}"

    card_from_output_dir(out, repo_id, card).save(out / outputs.CARD)
    try:
        url = with_retries(
            lambda: api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model"),
            f"create_repo {repo_id}",
            token,
            attempts,
            backoff_s,
        )
        if revision:
            with_retries(
                lambda: api.create_branch(repo_id, branch=revision, exist_ok=True),
                f"create_branch {revision}",
                token,
                attempts,
                backoff_s,
            )
        with_retries(
            lambda: api.upload_folder(
                folder_path=str(out),
                repo_id=repo_id,
                repo_type="model",
                revision=revision,
                ignore_patterns=IGNORE_PATTERNS,
                commit_message=commit_message,
            ),
            f"upload_folder to {repo_id}",
            token,
            attempts,
            backoff_s,
        )
    except HubError as exc:
        raise HubError(f"{exc}; {retry_hint}") from None
    logger.info("pushed %s to %s", out, url)
    return str(url)
