"""Pretrained encoder weights come from the Hugging Face hub (SMP's and timm's encoders), cached after the first
download. The hub's client retries a failed request five times with back-off: right for a flaky network, but
on an offline node it means about 25 s of warnings before the inevitable failure, even when the weights are in
the cache. So when the hub's host does not even resolve, and no proxy could resolve it for us, the hub is used
in its offline mode for the call: cached weights load at once, missing ones fail at once.
"""
from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from urllib.parse import urlparse

from huggingface_hub import constants

PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy")


def hub_host() -> str:
    return urlparse(constants.ENDPOINT).hostname or constants.ENDPOINT


def hub_unreachable() -> bool:
    """True when no request to the hub can succeed: its host name does not resolve and no proxy is set."""
    if constants.HF_HUB_OFFLINE or any(os.environ.get(name) for name in PROXY_VARIABLES):
        return False  # offline already, or a proxy that resolves names itself
    try:
        socket.getaddrinfo(hub_host(), 443)
    except socket.gaierror:
        return True
    except OSError:
        return False
    return False


@contextmanager
def hub_access():
    """Run the block against the hub, or against the cache alone when the hub cannot be reached; yields
    whether it is cache-only."""
    if not hub_unreachable():
        yield False
        return
    previous, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, True  # read at every request (is_offline_mode)
    try:
        yield True
    finally:
        constants.HF_HUB_OFFLINE = previous
