"""The model cards of the shipped change models (``models/artifacts/*.card.json``) and
their ONNX files, read from the artifacts folder for the MLM items of the STAC API."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from monitor.errors import ModelError


def shipped_artifacts_dir() -> Path | None:
    """The installed ``models`` package's ``artifacts/`` folder, or None without it."""
    spec = importlib.util.find_spec("models")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "artifacts"


class ModelCards:
    """Cards (as written by ``models.card``) in ``folder``, by model name."""

    def __init__(self, folder: Path | str | None = None) -> None:
        self.folder = Path(folder) if folder is not None else shipped_artifacts_dir()

    def cards(self) -> list[dict[str, Any]]:
        if self.folder is None or not self.folder.is_dir():
            return []
        out = []
        for path in sorted(self.folder.glob("*.card.json")):
            try:
                card = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ModelError(f"model card {path} is unreadable: {exc}",
                                 "re-export the model (urban-monitor models export)") from exc
            if isinstance(card, dict) and "name" in card and "version" in card:
                out.append(card)
        return out

    def onnx_path(self, card: dict[str, Any]) -> Path:
        if self.folder is None:
            raise ModelError("no model artifacts folder", "install the models package")
        return self.folder / str(card.get("onnx") or f"{card['name']}.onnx")
