"""Reachability of the Hugging Face hub, checked before any slow, retrying download."""

from __future__ import annotations

import os
import socket

HUB_HOST = "huggingface.co"


def hub_offline_reason() -> str | None:
    """Why the hub cannot be reached now, or None when it can be tried.

    Resolves the hub's host name: a fast failure on a machine without network, instead
    of the libraries' retries with back-off. With ``HF_HUB_OFFLINE`` set the libraries
    read their local cache only, so nothing is checked.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return None
    endpoint = os.environ.get("HF_ENDPOINT", "")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0] or HUB_HOST
    try:
        socket.getaddrinfo(host, 443)
    except OSError as err:
        return f"no network: {host} cannot be resolved ({err})"
    return None


def require_hub(parameter: str, name: str, embedded: str) -> None:
    """Raise a clear error when ``name`` must come from the hub and the hub is unreachable.

    Args:
        parameter: the user-facing parameter that named it (``"model"``, ``"dataset"``).
        name: the hub id.
        embedded: the embedded alternative to suggest.

    Raises:
        OSError: when the hub is not reachable.
    """
    reason = hub_offline_reason()
    if reason is not None:
        raise OSError(
            f"{parameter}: {name!r} is not a local path, so it must be downloaded from the "
            f"Hugging Face hub, which is not reachable ({reason}). Use the embedded "
            f"default {embedded!r} or a local copy (or set HF_HUB_OFFLINE=1 to read a copy "
            "already in your Hugging Face cache)."
        )
