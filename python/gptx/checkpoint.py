"""Training checkpoints: safetensors for tensors, JSON for the rest, a sha256 manifest, atomic directory writes.

Layout of a run directory:
    out_dir/latest.json            {"checkpoint": "step-000100"}  (replaced atomically after each save)
    out_dir/step-000100/manifest.json   {"format": "gptx-checkpoint", "version": 1, "files": {name: {sha256, bytes}}}
                        model.safetensors       parameters (Hugging Face names)
                        optimizer.safetensors   AdamW moments ("m/<name>", "v/<name>"), when an optimizer is saved
                        config.json             the model config
                        state.json              step, RNG states, data cursors, train config, tokenizer name, ...
                        generation_config.json  end-of-text id and default decoding, as transformers reads it
                        tokenizer/...           what Tokenizer.save wrote, when a tokenizer is saved: gptx's
                                                gptx_tokenizer.json and the files transformers' AutoTokenizer reads
A checkpoint is written into a temporary directory and renamed into place, and latest.json moves only after that, so
a crash mid-save leaves the previous checkpoint (and the pointer to it) intact. Every load checks every file's size and
sha256 first: a truncated, corrupt or missing file is a ValueError naming it, never a crash or silent garbage.
A run folder resolves to the newest step folder that verifies when a save was killed after its rename but before
latest.json moved (or before the first latest.json existed); what killed saves leave behind (.tmp-/.old- folders
named with their pid) is deleted by the next save or resume, once that pid is gone.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gptx.hf_io import GENERATION_FILE, generation_config_dict

FORMAT = "gptx-checkpoint"
VERSION = 1
MANIFEST = "manifest.json"
LATEST = "latest.json"
PREFIX = "step-"


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (Path, os.PathLike)):
        return os.fspath(o)
    raise TypeError(f"checkpoint: cannot store {type(o).__name__} in JSON")


def _write_json(path: Path, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, default=_json_default, allow_nan=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some filesystems cannot open directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _save_tensors(path: Path, tensors: dict) -> None:
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, os.fspath(path), metadata={"format": "np"})
    _fsync_file(path)


def save_checkpoint(out_dir, model, optimizer=None, state=None, tokenizer=None, keep=2) -> Path:
    """Write a checkpoint of `model` (and `optimizer`, `state`, `tokenizer`) under out_dir; returns its directory.

    state: a JSON-able dict; its "step" (default: the optimizer's step count, else 0) names the directory.
    keep: how many checkpoints to keep in out_dir (older ones are deleted after the new one is in place); 0 keeps all.
    """
    from gptx._checks import path as _path

    _path("save_checkpoint", "out_dir", out_dir)
    if not hasattr(model, "state_dict") or not hasattr(model, "config"):
        raise TypeError(f"save_checkpoint: model must be a gptx.GPT, got {type(model).__name__}")
    if isinstance(keep, bool) or not isinstance(keep, (int, np.integer)) or keep < 0:
        raise ValueError(f"save_checkpoint: keep must be an integer >= 0 (0 keeps all), got {keep!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = dict(state or {})
    step = int(state.get("step", optimizer.step_count if optimizer is not None else 0))
    state["step"] = step
    name = f"{PREFIX}{step:06d}"
    final = out_dir / name
    tmp = out_dir / f".tmp-{name}-{os.getpid()}"
    clean_stale_temp(out_dir)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    placed = False
    try:
        _save_tensors(tmp / "model.safetensors", model.state_dict())
        if optimizer is not None:
            osd = optimizer.state_dict()
            tensors = {f"m/{n}": a for n, a in osd["m"].items()}
            tensors.update({f"v/{n}": a for n, a in osd["v"].items()})
            _save_tensors(tmp / "optimizer.safetensors", tensors)
            state["optimizer"] = {"step": osd["step"], **optimizer.hparams()}
        _write_json(tmp / "config.json", model.config.to_dict())
        _write_json(tmp / GENERATION_FILE, generation_config_dict(model.config, tokenizer))
        if tokenizer is not None:
            state.setdefault("tokenizer", getattr(tokenizer, "name", None))
            tokenizer.save(tmp / "tokenizer", model_max_length=model.config.block_size)
        _write_json(tmp / "state.json", state)
        files = {}
        for p in sorted(tmp.rglob("*")):
            if p.is_file():
                rel = p.relative_to(tmp).as_posix()
                files[rel] = {"sha256": _sha256(p), "bytes": p.stat().st_size}
        _write_json(tmp / MANIFEST, {"format": FORMAT, "version": VERSION, "step": step, "files": files})
        _fsync_dir(tmp)
        if final.exists():  # a stale checkpoint of the same step (e.g. from a run that was resumed earlier)
            trash = out_dir / f".old-{name}-{os.getpid()}"
            os.replace(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(tmp, final)
        placed = True
        _fsync_dir(out_dir)
        pointer = out_dir / f".tmp-{LATEST}-{os.getpid()}"
        _write_json(pointer, {"checkpoint": name, "step": step})
        os.replace(pointer, out_dir / LATEST)
        _fsync_dir(out_dir)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        for left in out_dir.glob(f".tmp-{LATEST}-{os.getpid()}"):
            left.unlink(missing_ok=True)
        if _is_write_failure(e) and placed:  # the folder is complete: resolve_checkpoint takes it without the pointer
            raise OSError(f"checkpoint {final} was written but {out_dir / LATEST} could not be updated "
                          f"({_reason(e)}); the checkpoint is complete and --resume takes it") from None
        if _is_write_failure(e):  # disk full, read-only, quota: one line, and the previous checkpoint stays
            raise OSError(f"checkpoint {final} could not be written ({_reason(e)}); the previous checkpoint is "
                          f"intact") from None
        raise
    if keep and keep > 0:
        for old in list_checkpoints(out_dir)[:-keep]:
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    return final


def _is_write_failure(e: BaseException) -> bool:
    if isinstance(e, OSError):
        return True
    try:
        from safetensors import SafetensorError  # what save_file raises for a failed write (e.g. ENOSPC)
    except ImportError:
        return False
    return isinstance(e, SafetensorError)


def _reason(e: BaseException) -> str:
    text = (getattr(e, "strerror", None) or str(e) or type(e).__name__).strip()
    return text.splitlines()[0] if text else type(e).__name__


# What a save (or the log rewrite of a resume) leaves behind when it is killed: names ending in the writer's pid.
_TEMP_NAMES = re.compile(r"\.(?:tmp|old)-step-\d+-(\d+)|\.tmp-latest\.json-(\d+)|\.log\.jsonl\.(\d+)\.[0-9a-f]{8}\.tmp")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a leftover of this process is stale by definition: its save is not running
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's process (or unknowable): leave its files alone
    return True


def clean_stale_temp(out_dir) -> list[Path]:
    """Delete what killed saves of this run left in out_dir: only names this module (or the log rewrite) makes,
    and only those whose writing process is gone; returns what was removed. A 124M checkpoint is ~1.5 GB, so a
    few kills would otherwise fill the disk."""
    out_dir = Path(out_dir)
    removed = []
    if not out_dir.is_dir():
        return removed
    for p in out_dir.iterdir():
        m = _TEMP_NAMES.fullmatch(p.name)
        if m is None or _pid_alive(int(next(g for g in m.groups() if g))) or p.is_symlink():
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def list_checkpoints(out_dir) -> list[Path]:
    """Checkpoint directories in out_dir, oldest step first."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    found = [p for p in out_dir.iterdir()
             if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def _read_json(path: Path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ValueError(f"checkpoint file {path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: nested too deeply
        raise ValueError(f"checkpoint file {path} is not valid JSON: {e}") from None


def is_checkpoint(path) -> bool:
    path = Path(path)
    return (path / MANIFEST).is_file() or (path / LATEST).is_file() or \
        any((p / MANIFEST).is_file() for p in list_checkpoints(path))


def resolve_checkpoint(path) -> Path:
    """A checkpoint directory itself, or the one a run directory's latest.json points to."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return path
    if (path / LATEST).is_file():
        latest = _read_json(path / LATEST)
        name = latest.get("checkpoint") if isinstance(latest, dict) else None
        if not isinstance(name, str) or "/" in name or "\\" in name or name in ("", ".", ".."):
            raise ValueError(f"checkpoint file {path / LATEST} does not name a checkpoint directory")
        target = path / name
        if not (target / MANIFEST).is_file():
            raise ValueError(f"{path / LATEST} points to {target}, which has no {MANIFEST} (missing or deleted)")
        # A save killed after renaming its folder into place but before moving latest.json leaves a newer,
        # complete checkpoint: take it when it verifies.
        newer = _newest_verified(path, after=_step_of(target))
        return newer if newer is not None else target
    newest = _newest_verified(path)  # killed before the first latest.json existed
    if newest is not None:
        return newest
    if not path.exists():
        raise ValueError(f"no checkpoint at {path}: the directory does not exist")
    raise ValueError(f"no gptx checkpoint at {path}: neither {MANIFEST} nor {LATEST} found")


def _step_of(folder: Path) -> int:
    tail = folder.name[len(PREFIX):]
    return int(tail) if folder.name.startswith(PREFIX) and tail.isdigit() else -1


def _newest_verified(run_dir: Path, after: int = -1) -> Path | None:
    """The step folder of run_dir with the highest step above `after` whose manifest verifies, or None."""
    for folder in reversed(list_checkpoints(run_dir)):
        if _step_of(folder) <= after:
            break
        if not (folder / MANIFEST).is_file():
            continue
        try:
            verify_checkpoint(folder)
        except ValueError:
            continue  # incomplete or damaged: an older one may still be whole
        return folder
    return None


def verify_checkpoint(path) -> dict:
    """Check every file in the manifest (present, size, sha256); returns the manifest. ValueError names the file."""
    path = resolve_checkpoint(path)
    manifest = _read_json(path / MANIFEST)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"checkpoint file {path / MANIFEST} is not a {FORMAT} manifest")
    if manifest.get("version") != VERSION:
        raise ValueError(f"checkpoint file {path / MANIFEST}: version {manifest.get('version')} (this gptx reads "
                         f"{VERSION})")
    for rel, meta in manifest["files"].items():
        f = path / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts or not isinstance(meta, dict):
            raise ValueError(f"checkpoint file {path / MANIFEST}: bad entry {rel!r}")
        if not f.is_file():
            raise ValueError(f"checkpoint file {f} is missing")
        size = f.stat().st_size
        if size != meta.get("bytes"):
            raise ValueError(f"checkpoint file {f} has {size} bytes, the manifest says {meta.get('bytes')} "
                             f"(truncated or overwritten)")
        if _sha256(f) != meta.get("sha256"):
            raise ValueError(f"checkpoint file {f} is corrupt: its sha256 does not match the manifest")
    for required in ("model.safetensors", "config.json", "state.json"):
        if required not in manifest["files"]:
            raise ValueError(f"checkpoint {path}: the manifest does not list {required}")
    return manifest


def _load_tensors(path: Path) -> dict:
    from safetensors.numpy import load_file

    try:
        return load_file(os.fspath(path))
    except Exception as e:  # safetensors raises its own error types for malformed headers
        raise ValueError(f"checkpoint file {path} cannot be read as safetensors: {e}") from None


def _check_config(config: dict, path: Path) -> None:
    """The config by GPTConfig's rules, then bounded by what model.safetensors holds: whoever builds the model
    from it allocates only what the weights can fill."""
    from gptx._bounds import check_config_fits
    from gptx.config import GPTConfig

    try:
        GPTConfig.from_dict(config)
    except (ValueError, TypeError) as e:
        raise ValueError(f"checkpoint file {path / 'config.json'}: {e}") from None
    weights = path / "model.safetensors"
    check_config_fits(config, [weights], weights)


@dataclass
class Checkpoint:
    """Everything a checkpoint holds, loaded and verified."""

    path: Path
    config: dict          # the model config (GPTConfig.to_dict())
    model: dict           # parameter name -> np.ndarray
    optimizer: dict | None  # {"step", "m": {name: array}, "v": {name: array}} or None
    state: dict           # state.json
    tokenizer_dir: Path | None

    @property
    def step(self) -> int:
        return int(self.state.get("step", 0))


def load_checkpoint(path, with_optimizer=True) -> Checkpoint:
    """Verify and load a checkpoint directory (or a run directory's latest checkpoint)."""
    from gptx._checks import path as _path

    path = resolve_checkpoint(_path("load_checkpoint", "path", path))
    manifest = verify_checkpoint(path)
    config = _read_json(path / "config.json")
    state = _read_json(path / "state.json")
    if not isinstance(config, dict) or not isinstance(state, dict):
        raise ValueError(f"checkpoint {path}: config.json and state.json must hold JSON objects")
    _check_config(config, path)
    model = _load_tensors(path / "model.safetensors")
    optimizer = None
    if with_optimizer and "optimizer.safetensors" in manifest["files"]:
        tensors = _load_tensors(path / "optimizer.safetensors")
        m = {k[2:]: v for k, v in tensors.items() if k.startswith("m/")}
        v = {k[2:]: v for k, v in tensors.items() if k.startswith("v/")}
        if set(m) != set(v) or len(m) + len(v) != len(tensors):
            raise ValueError(f"checkpoint file {path / 'optimizer.safetensors'} does not hold matching m/ and v/ "
                             f"moments")
        opt_state = state.get("optimizer", {})
        optimizer = {"step": int(opt_state.get("step", state.get("step", 0))), "m": m, "v": v}
    tok = path / "tokenizer"
    return Checkpoint(path=path, config=config, model=model, optimizer=optimizer, state=state,
                      tokenizer_dir=tok if tok.is_dir() else None)
