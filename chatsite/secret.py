"""A per-install secret key for the embedded default, generated once and kept outside the code."""
import secrets
from pathlib import Path


def local_secret_key(path: Path) -> str:
    """Read the key at ``path``, creating it on first use."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(50)
        try:
            with open(path, "x") as f:  # two processes starting together must agree on one key
                f.write(key)
        except FileExistsError:
            return path.read_text().strip()
        return key
