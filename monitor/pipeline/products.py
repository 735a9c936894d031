"""Publishing a city's change layers: when a state version gets its COGs and STAC item.

The inference worker calls :meth:`LayerPublisher.state_saved` after each saved version;
the cadence (``products.layers_cadence``, :class:`monitor.products.layers.LayerCadence`)
decides whether this version is published. Layers are derived products: a failure to
write them is logged and never fails the scene (the state is intact, and the next due
version or ``urban-monitor products publish`` writes them).

Cost: the worker saves one state version per scene; writing the seven COGs of a 0.3 Mpx
city takes 0.2-0.4 s on the shared 2 cores (tests/integration/test_products.py prints
it; about 1 s for 1 Mpx), so the default publishes at most once per city and acquisition
day. On the fault harness's synthetic city (mostly one scene a day) that is 57 of 75
scenes at 0.1-0.2 s each.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from monitor.domain.state import CityState
from monitor.errors import ProductError, UrbanMonitorError
from monitor.ports import LayerRepository
from monitor.products.layers import LayerCadence, PublishedMark, layer_set

log = logging.getLogger(__name__)


class LayerExport(LayerRepository, Protocol):
    """What an export reads besides writing (``monitor.adapters.layer_store.LayerStore``)."""

    def versions(self, city_id: str) -> list[int]: ...

    def item(self, city_id: str, version: int) -> dict[str, Any] | None: ...

    def read_asset(self, city_id: str, version: int, layer: str) -> bytes: ...


class ModelCardExport(Protocol):
    """The model cards and their ONNX files (``monitor.adapters.model_cards.ModelCards``)."""

    def cards(self) -> list[dict[str, Any]]: ...

    def onnx_path(self, card: dict[str, Any]) -> Path: ...


@dataclass
class LayerPublisher:
    """Writes the layers of the versions its cadence picks (one per worker process)."""

    store: LayerRepository
    cadence: LayerCadence = field(default_factory=LayerCadence)
    seconds: float = 0.0
    published: int = 0
    _marks: dict[str, PublishedMark | None] = field(default_factory=dict)

    def _mark(self, city_id: str) -> PublishedMark | None:
        if city_id not in self._marks:
            self._marks[city_id] = self.store.last_published(city_id)
        return self._marks[city_id]

    def publish(self, city_id: str, state: CityState) -> dict[str, Any]:
        """Write the layers of ``state`` now (on demand); returns the STAC item."""
        t0 = time.perf_counter()
        layers = layer_set(city_id, state)
        item = self.store.write(layers)
        self._marks[city_id] = self.store.last_published(city_id)
        self.seconds += time.perf_counter() - t0
        self.published += 1
        log.info("change layers of %s, state version %d published (%.2f s)", city_id,
                 state.version, time.perf_counter() - t0)
        return item

    def state_saved(self, city_id: str, state: CityState) -> bool:
        """Publish if the cadence says this version is due; True when it was written."""
        try:
            if not self.cadence.due(state, self._mark(city_id)):
                return False
            self.publish(city_id, state)
            return True
        except UrbanMonitorError as exc:
            log.warning("%s", exc)
            self._marks.pop(city_id, None)  # re-read the mark next time
            return False


def export_static_catalog(layers: LayerExport, city_id: str, out: Path, *,
                          state: CityState | None = None,
                          cards: ModelCardExport | None = None) -> Path:
    """Write the city's published change layers (and the model cards as MLM items) as a
    self-contained static STAC catalog under ``out``: ``catalog.json``, one folder per
    collection, one per item with its COGs (relative hrefs). With no published layers
    yet, ``state``'s are published first (on demand). Returns the catalog's path."""
    import pystac

    from monitor.products.layers import LAYER_SET
    from monitor.products.mlm import model_item, models_collection
    from monitor.products.stac import layer_collection

    versions = layers.versions(city_id)
    if not versions:
        if state is None:
            raise ProductError(city_id, "has no published change layers and no saved state",
                               "process scenes of the city first (urban-monitor serve ...)")
        LayerPublisher(layers).publish(city_id, state)
        versions = layers.versions(city_id)
    stored = [found for v in versions if (found := layers.item(city_id, v)) is not None]
    out = Path(out)
    catalog = pystac.Catalog(
        id="urban-monitor", title="Urban Monitor results",
        description=f"Change layers of city {city_id} (Cloud-Optimized GeoTIFFs) and the "
                    "change models (STAC MLM), exported by urban-monitor export stac.")
    collection = layer_collection(stored)
    catalog.add_child(collection)
    for entry in stored:
        item = pystac.Item.from_dict(entry)
        folder = out / LAYER_SET / item.id
        folder.mkdir(parents=True, exist_ok=True)
        _, version = int_version(item.id)
        for key, asset in item.assets.items():
            target = folder / f"{key}.tif"
            target.write_bytes(layers.read_asset(city_id, version, key))
            asset.href = str(target.resolve())
        collection.add_item(item)
    if cards is not None:
        card_list = cards.cards()
        models = models_collection(card_list)
        catalog.add_child(models)
        for card in card_list:
            source = Path(cards.onnx_path(card))
            item = model_item(card, str(source))
            folder = out / models.id / item.id
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / source.name
            shutil.copyfile(source, target)
            item.assets["model"].href = str(target.resolve())
            models.add_item(item)
    catalog.normalize_hrefs(str(out.resolve()))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return out / "catalog.json"


def int_version(item_id: str) -> tuple[str, int]:
    from monitor.products.stac import parse_item_id

    parsed = parse_item_id(item_id)
    if parsed is None:
        raise ProductError(item_id, "is not a change-layer item id", "<city>-v<8 digits>")
    return parsed
