"""What a file, a folder or a tokenizer is, by content: the parts of a trajectory store's fingerprint that name
files (the reference policy, the training data, the verifier's code), so that a copy anywhere finds the same store
and a file changed in place a new one."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from drift_verl.core import safe_io

HASH_CHUNK = 1 << 20


def _hash_cache_file() -> Path:
    return safe_io.cache_dir() / "content_hashes.json"  # beside the versioned asset folders


def _file_digest(path: Path, cache: dict) -> str:
    """sha256 of a file's bytes, read in chunks; remembered by (path, inode, size, mtime, ctime) so a big file is
    read once."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_ino}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}"
    if key not in cache:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(HASH_CHUNK):
                digest.update(chunk)
        cache[key] = digest.hexdigest()
    return cache[key]


def content_identity(path: str) -> str:
    """The content of a file, or of a folder's files (names relative to it, and bytes), as one sha256: equal for
    copies anywhere, different when any byte changes. A path that does not exist here (a hub model name) is
    identified by its name."""
    target = Path(path)
    if not target.exists():
        return f"name:{path}"
    cache_file = _hash_cache_file()
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    files = [target] if target.is_file() else sorted(
        p for p in target.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(target).parts))
    combined = hashlib.sha256()
    for file in files:
        combined.update(f"{file.relative_to(target) if file != target else ''}\0{_file_digest(file, cache)}\0".encode())
    try:  # only a shortcut for the next time: a read-only cache folder just means hashing again
        safe_io.write_text(cache_file, json.dumps(cache))
    except OSError:
        pass
    return combined.hexdigest()


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "chat_template.jinja", "chat_template.json", "vocab.json", "merges.txt", "tokenizer.model")


def tokenizer_identity(path: str, chat_template: str | None = None) -> str:
    """What turns a conversation into token ids: the tokenizer's files in a model folder (or a hub name) and a
    custom chat template. Stored token ids are only trainable by a policy with the same identity."""
    folder = Path(path)
    if not folder.is_dir():
        return f"name:{path}|{chat_template}"
    digest = hashlib.sha256()
    for name in TOKENIZER_FILES:
        if (folder / name).is_file():
            digest.update(f"{name}\0{content_identity(str(folder / name))}\0".encode())
    digest.update(f"template\0{chat_template}".encode())
    return digest.hexdigest()
