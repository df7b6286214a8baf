"""Verified, durable, resumable checkpoints.

Layout under a checkpoint root (a training stage's ``checkpoints/``)::

    step-00000007/            one checkpoint
        deepspeed/...         DeepSpeed's own files: optimizer, scheduler, engine counters (per rank)
        model.safetensors     the module's weights
        state.json            the loop's position, RNG states and the stage's extra state
        manifest.json         size and SHA-256 of every other file; written last
    latest                    {"checkpoint": "step-00000007"}: the commit point

Writing (:func:`save`, all ranks call it): the checkpoint is built in ``.tmp-step-<n>``; every
rank writes its DeepSpeed files, then (after a barrier) rank 0 writes the weights and the state,
fsyncs and hashes every file, writes the manifest, fsyncs the directories, renames the directory
into place, fsyncs the root, and replaces ``latest`` (durably, by rename). A crash at any moment
leaves the previous checkpoint committed and intact. Only ``keep`` checkpoints are kept.

Reading (:func:`restore`, or :func:`latest` + :func:`load`): a checkpoint is used only if its
manifest verifies (every file present, the same size and hash, nothing else). The one ``latest``
names is tried first; one that fails, or a ``latest`` naming a missing directory, is skipped with a
:class:`CheckpointWarning` naming it and the reason, and the newest valid older one is used. If
checkpoints existed and none is valid, :class:`CheckpointError` says so (a run never silently
restarts from step 0). DeepSpeed's pickles are read with ``weights_only=True`` (see
:mod:`elm_train.runtime.safe_load`): a crafted file is refused, never executed.

On several processes the checkpoint root must be on a file system all ranks share (as DeepSpeed
requires to resume anyway): rank 0 verifies and hashes the files every rank wrote.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from elm_train.runtime import distributed as dist
from elm_train.runtime import faults, fsio, safe_load
from elm_train.runtime.errors import CheckpointError, UnsafeCheckpointError
from elm_train.runtime.fsio import write_json_atomic

__all__ = [
    "DS_TAG",
    "LATEST",
    "MANIFEST",
    "CheckpointError",
    "CheckpointWarning",
    "Restored",
    "Selection",
    "UnsafeCheckpointError",
    "latest",
    "load",
    "restore",
    "save",
    "select",
    "verify",
    "write_json_atomic",
    "write_manifest",
]

LATEST = "latest"
DS_TAG = "deepspeed"
MANIFEST = "manifest.json"
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.json"
MANIFEST_FORMAT = "elm-checkpoint/1"
STEP_DIR = re.compile(r"step-(\d+)")


class CheckpointWarning(UserWarning):
    """A checkpoint was skipped (corrupt, incomplete or missing); an older one is used."""


def step_name(step: int) -> str:
    return f"step-{step:08d}"


def step_dirs(root: Path) -> list[tuple[int, Path]]:
    """The ``step-<n>`` directories under ``root``, newest first."""
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        match = STEP_DIR.fullmatch(entry.name)
        if match and entry.is_dir():
            found.append((int(match.group(1)), entry))
    return sorted(found, reverse=True)


# --- RNG ------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    py = random.getstate()
    return {
        "python": [py[0], list(py[1]), py[2]],
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(state["torch"])), dtype=torch.uint8))


# --- manifest ---------------------------------------------------------------------------------


def write_manifest(directory: Path, step: int | None = None) -> dict[str, Any]:
    """fsync and hash every file under ``directory``, then write ``manifest.json`` (fsynced) and
    fsync the directories. Call it when every other file of the checkpoint is complete."""
    files: dict[str, dict[str, Any]] = {}
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(directory).as_posix()
            if rel == MANIFEST:
                continue
            if path.is_symlink():
                raise CheckpointError(f"{path}: a checkpoint may not hold symbolic links")
            fsio.fsync_file(path)
            files[rel] = {"size": path.stat().st_size, "sha256": fsio.sha256_file(path)}
    manifest = {"format": MANIFEST_FORMAT, "step": step, "files": files}
    with open(directory / MANIFEST, "w") as f:
        f.write(json.dumps(manifest, indent=2, sort_keys=True))
        f.flush()
        os.fsync(f.fileno())
    fsio.fsync_tree_dirs(directory)
    return manifest


def verify(path: Path) -> dict[str, Any]:
    """Check checkpoint ``path`` against its manifest; returns the manifest, or raises
    :class:`CheckpointError` saying what is wrong (missing, truncated, altered, unlisted files)."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path} does not exist")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} has no {MANIFEST} (its write did not finish)") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path / MANIFEST} is unreadable: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise CheckpointError(f"{path / MANIFEST} is not an {MANIFEST_FORMAT} manifest")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise CheckpointError(f"{path / MANIFEST} is not an {MANIFEST_FORMAT} manifest")
    match = STEP_DIR.fullmatch(path.name)
    if match and manifest.get("step") is not None and int(match.group(1)) != manifest["step"]:
        raise CheckpointError(f"{path / MANIFEST} is for step {manifest['step']}, not {path.name}")
    for required in (MODEL_FILE, STATE_FILE):
        if required not in files:
            raise CheckpointError(f"{path / MANIFEST} does not list {required}")
    entries = []
    for rel, entry in files.items():
        parts = PurePosixPath(rel).parts
        if PurePosixPath(rel).is_absolute() or ".." in parts or not parts or not isinstance(entry, dict):
            raise CheckpointError(f"{path / MANIFEST} lists an invalid entry {rel!r}")
        file = path.joinpath(*parts)
        if file.is_symlink() or not file.is_file():
            raise CheckpointError(f"{file} is missing")
        size = file.stat().st_size
        if size != entry.get("size"):
            raise CheckpointError(
                f"{file} has {size} bytes, the manifest says {entry.get('size')} (truncated?)"
            )
        entries.append((file, entry))
    present = {
        (Path(dirpath) / name).relative_to(path).as_posix()
        for dirpath, _, names in os.walk(path)
        for name in names
    }
    unlisted = sorted(present - set(files) - {MANIFEST})
    if unlisted:
        raise CheckpointError(f"{path} holds files its manifest does not list: {', '.join(unlisted)}")
    for file, entry in entries:  # the expensive part last
        if fsio.sha256_file(file) != entry.get("sha256"):
            raise CheckpointError(f"{file} does not match its SHA-256 in the manifest (corrupted)")
    return manifest


# --- choosing a checkpoint ----------------------------------------------------------------------


@dataclass
class Selection:
    """The checkpoint to resume from (``None``: there never was one) and those skipped on the way."""

    path: Path | None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(name, why) of each checkpoint (or ``latest`` pointer) passed over, in the order tried."""


def _read_pointer(root: Path) -> tuple[str | None, str | None]:
    """(checkpoint name, problem) from ``root/latest``; both None when there is no pointer."""
    pointer = root / LATEST
    if not pointer.is_file():
        return None, None
    try:
        name = json.loads(pointer.read_text())["checkpoint"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, f"{pointer} is unreadable ({type(e).__name__}: {e})"
    if not isinstance(name, str) or not STEP_DIR.fullmatch(name):
        return None, f"{pointer} names {name!r}, which is not a checkpoint name"
    return name, None


def select(root: Path) -> Selection:
    """The newest valid checkpoint under ``root``: the one ``latest`` names if it verifies, else
    the newest older one that does. Raises :class:`CheckpointError` when checkpoints (or a
    ``latest`` pointer) exist but none verifies. Only reads; emits no warnings."""
    root = Path(root)
    candidates = step_dirs(root)
    pointed, problem = _read_pointer(root)
    skipped: list[tuple[str, str]] = []
    order: list[Path] = []
    if problem is not None:
        skipped.append((LATEST, problem))
    elif pointed is not None:
        if (root / pointed).is_dir():
            order.append(root / pointed)
        else:
            skipped.append((pointed, f"{root / LATEST} names {pointed}, which does not exist"))
    elif candidates:
        skipped.append((LATEST, f"{root / LATEST} is missing"))
    order += [path for _, path in candidates if path.name != pointed]
    for path in order:
        try:
            verify(path)
        except CheckpointError as e:
            skipped.append((path.name, str(e)))
            continue
        return Selection(path, skipped)
    if skipped or candidates:
        reasons = "\n  ".join(f"{name}: {why}" for name, why in skipped)
        raise CheckpointError(
            f"no valid checkpoint in {root}; it will not restart from step 0 on its own. "
            f"Checked:\n  {reasons}\nRestore the directory from a backup, or delete it to train "
            "this stage from the start."
        )
    return Selection(None, skipped)


def _warn_skipped(skipped: list[tuple[str, str]], root: Path, used: Path | None) -> None:
    for name, why in skipped:
        warnings.warn(
            f"skipping checkpoint {root / name}: {why}; "
            + (f"resuming from {used.name} instead" if used is not None else "no older checkpoint to use"),
            CheckpointWarning,
            stacklevel=3,
        )


def latest(root: Path) -> Path | None:
    """The newest valid checkpoint under ``root`` (see :func:`select`), warning about each one
    skipped; ``None`` if no checkpoint was ever committed there."""
    root = Path(root)
    selection = select(root)
    _warn_skipped(selection.skipped, root, selection.path)
    return selection.path


# --- writing ----------------------------------------------------------------------------------


def _untie(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses shared storage; tied weights are written once per name as copies."""
    seen: dict[int, str] = {}
    out = {}
    for key, value in tensors.items():
        ptr = value.data_ptr()
        out[key] = value.clone() if ptr in seen else value
        seen.setdefault(ptr, key)
    return out


def _check_finite(module: torch.nn.Module, step: int) -> None:
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if tensor.is_floating_point() and tensor.numel() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(
                f"refusing to write the checkpoint of step {step}: {name} holds non-finite values "
                "(NaN or inf); the last checkpoint written is left as it is"
            )


def save(root: Path, step: int, engine: Any, state: dict[str, Any], keep: int = 2) -> Path:
    """Write checkpoint ``step-<n>`` under ``root`` and make it ``latest``; all ranks must call.

    ``keep`` > 0 keeps that many checkpoints (this one included); 0 keeps all.
    """
    root = Path(root)
    name = step_name(step)
    final = root / name
    tmp = root / f"{fsio.TMP_PREFIX}{name}"
    _check_finite(engine.module, step)  # on every rank, so that all of them stop together
    if dist.rank() == 0:
        root.mkdir(parents=True, exist_ok=True)
        fsio.clean_temporaries(root)  # left by a process killed while writing
        tmp.mkdir()
    dist.barrier()
    engine.save_checkpoint(str(tmp), tag=DS_TAG, save_latest=False)
    dist.barrier()  # every rank's DeepSpeed files are complete
    if dist.rank() == 0:
        tensors = {k: v.detach().contiguous().cpu() for k, v in engine.module.state_dict().items()}
        save_file(_untie(tensors), str(tmp / MODEL_FILE))
        payload = {**state, "step": step, "rng": rng_state()}
        (tmp / STATE_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True))
        faults.maybe_crash("checkpoint-write", f"checkpoint-write/{state.get('stage', '')}")
        write_manifest(tmp, step)
        fsio.publish_directory(tmp, final)
        write_json_atomic(root / LATEST, {"checkpoint": name})
        _prune(root, step, keep)
    dist.barrier()
    return final


def _prune(root: Path, current: int, keep: int) -> None:
    """Keep ``current`` and the ``keep - 1`` newest older checkpoints; newer ones are from an
    abandoned timeline (written after the checkpoint this run resumed from) and go too."""
    if keep <= 0:
        return
    others = [(s, p) for s, p in step_dirs(root) if s != current]
    older = [p for s, p in others if s < current]  # newest first
    doomed = [p for s, p in others if s > current] + older[keep - 1 :]
    for path in doomed:
        trash = path.with_name(f"{fsio.TRASH_PREFIX}{path.name}")
        fsio.remove_tree(trash)
        os.rename(path, trash)  # gone from the candidates at once, never half-deleted
        fsio.remove_tree(trash)
    if doomed:
        fsio.fsync_dir(root)


# --- reading ----------------------------------------------------------------------------------


def load(path: Path, engine: Any, *, verify_manifest: bool = True) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and RNG from checkpoint ``path``; returns the saved
    state. The manifest is verified first unless ``verify_manifest`` is False (the caller has)."""
    path = Path(path)
    if verify_manifest:
        verify(path)
    safe_load.install(engine)
    try:
        load_path, _ = engine.load_checkpoint(str(path), tag=DS_TAG, load_module_strict=True)
        if load_path is None:
            raise CheckpointError(f"{path}: DeepSpeed found no checkpoint under {DS_TAG}/")
        weights = load_file(str(path / MODEL_FILE))
        engine.module.load_state_dict(weights, strict=True)
        state = json.loads((path / STATE_FILE).read_text())
        set_rng_state(state["rng"])
    except CheckpointError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"could not restore {path}: {type(e).__name__}: {e}") from e
    return state


@dataclass
class Restored:
    path: Path
    state: dict[str, Any]
    skipped: list[tuple[str, str]]


def restore(root: Path, engine: Any) -> Restored | None:
    """Load the newest valid checkpoint under ``root`` into ``engine``; all ranks must call.

    Rank 0 removes leftovers of interrupted writes, chooses and verifies (warning about each
    checkpoint skipped) and tells the other ranks which one to load. ``None``: no checkpoint was
    ever committed under ``root``.
    """
    root = Path(root)
    choice: dict[str, Any] = {}
    if dist.rank() == 0:
        fsio.clean_temporaries(root)
        try:
            selection = select(root)
        except CheckpointError as e:
            choice = {"error": str(e)}
        else:
            _warn_skipped(selection.skipped, root, selection.path)
            choice = {"name": selection.path and selection.path.name, "skipped": selection.skipped}
    choice = dist.broadcast_object(choice)
    if "error" in choice:
        raise CheckpointError(choice["error"])
    if choice["name"] is None:
        return None
    path = root / choice["name"]
    state = load(path, engine, verify_manifest=False)
    return Restored(path, state, [tuple(s) for s in choice["skipped"]])
