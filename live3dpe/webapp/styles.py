"""Named editors ("styles") the UI can switch between: the loaded model plus any customized ones."""
from __future__ import annotations

import threading


class StyleBook:
    """Thread-safe name -> Editor map; a freshly adapted style is usable as soon as it is added."""

    def __init__(self, base, default: str = "default") -> None:
        self.default = default
        self._lock = threading.Lock()
        self._editors = {default: base}

    def names(self) -> list[str]:
        with self._lock:
            return list(self._editors)

    def get(self, name: str | None):
        with self._lock:
            if not name:
                return self._editors[self.default]
            if name not in self._editors:
                raise ValueError(f"unknown style {name!r}; available: {', '.join(self._editors)}")
            return self._editors[name]

    def add(self, name: str, editor) -> str:
        """Register `editor` under `name` (stripped, non-empty); an existing name is replaced."""
        name = name.strip()
        if not name:
            raise ValueError("a style needs a name")
        if len(name) > 60:
            raise ValueError(f"style name too long ({len(name)} characters, limit 60)")
        with self._lock:
            self._editors[name] = editor
        return name
