"""Per-user files (settings, workflows) under user/<user>/ — placeholder, being written."""
from __future__ import annotations

from pathlib import Path


class UserStore:
    def __init__(self, root: Path, *, multi_user: bool = False):
        self.root = Path(root)
        self.multi_user = multi_user
