"""Pretrained encoder weights come from the Hugging Face hub (SMP's and timm's encoders), cached after the first
download. The hub's client retries a failed request five times with back-off: right for a flaky network, but
on an offline node it means about 25 s of warnings before the inevitable failure, even when the weights are in
the cache. So when the hub's host does not even resolve, and no proxy could resolve it for us, the hub is used
in its offline mode for the call: cached weights load at once, missing ones fail at once.

A trained model leaves as a folder (or a hub repository) of config.json and model.safetensors, as SMP's models do:
`save_pretrained`, `load_pretrained` and `push_to_hub` below, which `SegmentationModel` offers as methods.
"""
from __future__ import annotations

import json
import os
import socket
import tempfile
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from urllib.parse import urlparse

import segmentation_models_pytorch as smp
from huggingface_hub import HfApi, constants, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HFValidationError
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

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


# ---------------------------------------------------------------------------------- a trained model as a folder
# save_pretrained / from_pretrained / push_to_hub, as SMP (and Hugging Face's PyTorchModelHubMixin) do it: a folder,
# or a hub repository, holding config.json (the ModelSpec: what rebuilds the model and prepares its inputs) and
# model.safetensors (every weight, the AFMA module's included).
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# smp.from_pretrained(DIR) looks this key's value up as a class of segmentation_models_pytorch. Given this sentence
# it fails with it (AttributeError), instead of building a plain SMP network that lacks the AFMA module.
SMP_CLASS_KEY = "_model_class"
NOT_AN_SMP_CLASS = ("AFMA SegmentationModel, not an SMP class: load this folder with "
                    "models.SegmentationModel.from_pretrained(DIR) or torch.hub.load(REPO, 'from_pretrained', DIR)")
SAVES_WITH = "tools/save_pretrained.py RUN/best.pt DIR turns a run's checkpoint into one"


class PretrainedError(ValueError):
    """A saved model that cannot be written or loaded; the message names the folder or hub id and what to do."""


def save_pretrained(model, directory) -> Path:
    """Write `model`'s config.json and model.safetensors into `directory` (created if needed). Each file is
    written to a temporary name and renamed, so a kill leaves the previous file or the new one."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise PretrainedError(f"{directory} is a file: give a folder to save the model in")
    directory.mkdir(parents=True, exist_ok=True)
    config = json.dumps(model.spec.to_dict() | {SMP_CLASS_KEY: NOT_AN_SMP_CLASS}, indent=2) + "\n"
    _write_replacing(directory / WEIGHTS_NAME, lambda path: save_model(model, path, metadata={"format": "pt"}))
    _write_replacing(directory / CONFIG_NAME, lambda path: Path(path).write_text(config))
    return directory


def load_pretrained(name, *, device="cpu", revision: str | None = None, cache_dir=None, token=None,
                    force_download: bool = False, local_files_only: bool = False):
    """The model saved in folder `name`, or in the hub repository `name` ("user/model", fetched through
    huggingface_hub's cache), rebuilt from its spec with its weights, in eval mode (as SMP returns it)."""
    folder = Path(name)
    if folder.is_dir():
        config_path, weights_path = (_local_file(folder, file) for file in (CONFIG_NAME, WEIGHTS_NAME))
    elif folder.exists():
        raise PretrainedError(f"{name} is a file: give the folder that save_pretrained wrote (it holds "
                              f"{CONFIG_NAME} and {WEIGHTS_NAME})")
    else:
        config_path, weights_path = _hub_files(str(name), revision=revision, cache_dir=cache_dir, token=token,
                                               force_download=force_download, local_files_only=local_files_only)
    from . import build_model  # here: the package imports this module

    model = build_model(**read_spec(config_path, name).to_dict())
    try:
        missing, unexpected = load_model(model, weights_path, strict=False)  # on the CPU: moved once, below
    except (SafetensorError, RuntimeError, OSError) as error:  # a corrupt file, a tensor of another shape
        lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
        detail = lines[1] if len(lines) > 1 and lines[0].startswith("Error(s) in loading") else lines[0]
        raise PretrainedError(f"{weights_path} cannot be loaded into the model its {CONFIG_NAME} describes "
                              f"({detail}); save the model again") from None
    if missing or unexpected:
        kind, keys = ("missing", sorted(missing)) if missing else ("unexpected", sorted(unexpected))
        keys = f"{len(keys)} {kind} weights, {keys[0]} first"
        raise PretrainedError(f"{weights_path} does not fit the model its {CONFIG_NAME} describes ({keys}); "
                              f"save the model again")
    return model.to(device).eval()


def read_spec(config_path, name):
    """The ModelSpec in a saved model's config.json, or one line saying what the file is instead."""
    from . import ModelSpec, check_spec

    try:
        config = json.loads(Path(config_path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise PretrainedError(f"{config_path} cannot be read as JSON ({error}); save the model again") from None
    if not isinstance(config, dict):
        raise PretrainedError(f"{config_path} is not a saved AFMA model's config (not a JSON object)")
    smp_class = config.pop(SMP_CLASS_KEY, None)  # ours says it is no SMP class, whatever its wording then
    if isinstance(smp_class, str) and hasattr(smp, smp_class):
        raise PretrainedError(f"{name} holds a plain SMP {smp_class} (saved by SMP's save_pretrained), not an AFMA "
                              f"model: load it with segmentation_models_pytorch.from_pretrained")
    try:
        spec = ModelSpec.from_dict(config)
        check_spec(spec)
    except (TypeError, ValueError) as error:
        raise PretrainedError(f"{config_path} is not a saved AFMA model's config ({error}); {SAVES_WITH}") from None
    return spec


def push_to_hub(model, repo_id: str, *, private: bool | None = None, token=None, revision: str | None = None,
                commit_message: str = "Upload AFMA model", create_pr: bool = False):
    """save_pretrained into the hub repository `repo_id` (created if missing), as one commit; the commit's
    information as huggingface_hub returns it. Needs a token with write access (`hf auth login`)."""
    if hub_unreachable():
        raise PretrainedError(f"cannot push to {repo_id}: {hub_host()} cannot be resolved (offline); save the model "
                              f"with save_pretrained(DIR) and push the folder from a connected machine")
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    with tempfile.TemporaryDirectory() as folder:
        save_pretrained(model, folder)
        return api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type="model", revision=revision,
                                 commit_message=commit_message, create_pr=create_pr)


def guard_inner_network(net) -> None:
    """SMP's own save_pretrained and push_to_hub on the inner network (`model.net`) would save it without the AFMA
    module, and smp.from_pretrained would then load a different model without a word: refuse them on this
    instance, naming the call that saves the whole model."""
    for method in ("save_pretrained", "push_to_hub"):
        if hasattr(net, method):
            setattr(net, method, partial(_refuse_inner, method))


def _refuse_inner(method: str, *args, **kwargs):
    raise PretrainedError(f"model.net.{method} would save the SMP network without its AFMA weights (a different "
                          f"model once loaded); call {method} on the AFMA model itself: model.{method}(...)")


def _local_file(folder: Path, file: str) -> Path:
    path = folder / file
    if not path.is_file():
        raise PretrainedError(f"{folder} has no {file}: give a folder written by save_pretrained ({SAVES_WITH})")
    return path


def _hub_files(repo_id: str, **options) -> tuple[str, str]:
    with hub_access() as cache_only:
        try:
            return tuple(hf_hub_download(repo_id, file, library_name="afma", **options)
                         for file in (CONFIG_NAME, WEIGHTS_NAME))
        except HFValidationError:
            raise PretrainedError(f"{repo_id}: no such folder, and not a hub model id (user/model); give the "
                                  f"folder that save_pretrained wrote ({SAVES_WITH})") from None
        except (OSError, EntryNotFoundError) as error:
            why = f"{hub_host()} cannot be resolved and it is not cached" if cache_only else _first_line(error)
            raise PretrainedError(f"{repo_id}: no such folder, and the hub model cannot be fetched ({why}); give a "
                                  f"folder written by save_pretrained, or connect and check the id") from None


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_replacing(path: Path, write) -> None:
    """write(temporary_path), then rename it to `path` (atomic on one file system)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(str(temporary))
        os.chmod(temporary, 0o666 & ~_umask())  # safetensors' writer makes its file private (0600)
        os.replace(temporary, path)
    except OSError as error:
        raise PretrainedError(f"{path} cannot be written ({error.strerror or error}); free space or choose "
                              f"another folder") from None
    finally:
        temporary.unlink(missing_ok=True)
