"""Model cards as STAC items with the Machine Learning Model (MLM) extension.

Each shipped change model's card (``models/artifacts/<name>.card.json``, written by
``models.card``) becomes one STAC item of the ``change-models`` collection: the MLM fields
(name, architecture, tasks, framework, inputs with their bands and shapes, output, the
ONNX asset) come from the card, and every other entry of the card (training data and
configuration, metrics, licence, threshold, calibration, references ...) is kept under
``urban_monitor:<key>``, so nothing of the card is lost.

The weights' licence is the item's ``license``: **CC-BY-NC-SA-4.0**, because the models
are trained on the OSCD change labels (CC BY-NC-SA 4.0); it is not the code's licence
(Apache-2.0). See ``models/artifacts/WEIGHTS-LICENSE.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import pystac
from pystac.extensions.file import FileExtension
from pystac.extensions.mlm import (
    AcceleratorType,
    AssetGeneralMLMExtension,
    InputStructure,
    MLMExtension,
    ModelInput,
    ModelOutput,
    ProcessingExpression,
    ResultStructure,
    TaskType,
)
from pystac.extensions.raster import DataType

MODELS_COLLECTION = "change-models"
WEIGHTS_LICENSE = "CC-BY-NC-SA-4.0"
WEIGHTS_LICENSE_URL = "https://creativecommons.org/licenses/by-nc-sa/4.0/"
WEIGHTS_LICENSE_NOTE = (
    "The model weights are licensed CC BY-NC-SA 4.0 (non-commercial, share alike): they "
    "are trained on the OSCD change labels, which carry that licence. The Urban Monitor "
    "code is Apache-2.0; that licence does not cover the weights.")
ONNX_MEDIA_TYPE = "application/octet-stream; application=onnx"
PROPERTY_PREFIX = "urban_monitor:"
# OSCD's image pairs were acquired 2015-2018 (the card's licence entry).
TRAINING_START = datetime(2015, 1, 1, tzinfo=UTC)
TRAINING_END = datetime(2018, 12, 31, tzinfo=UTC)
# card keys that become MLM fields (everything else is kept under urban_monitor:<key>)
_MAPPED = {"name", "architecture", "inputs", "output", "onnx", "onnx_opset", "onnx_sha256",
           "onnx_bytes"}


def item_id_for_card(card: Mapping[str, Any]) -> str:
    """``change_s2-2.0.0``: the model's name and version."""
    return f"{card['name']}-{card['version']}"


def _model_input(spec: Mapping[str, Any]) -> ModelInput:
    channels = int(spec.get("channels") or len(spec.get("bands", [])) or 1)
    description = "; ".join(str(spec[k]) for k in ("role", "runtime_units", "normalisation")
                            if spec.get(k))
    normalisation = str(spec.get("normalisation", ""))
    function = normalisation.split(":", 1)[0].strip() if normalisation else ""
    return ModelInput.create(
        name=str(spec["name"]), bands=[str(b) for b in spec.get("bands", [])],
        input=InputStructure.create(shape=[-1, channels, -1, -1],
                                    dim_order=["batch", "bands", "height", "width"],
                                    data_type=DataType(str(spec.get("dtype", "float32")))),
        description=description,
        pre_processing_function=ProcessingExpression.create(format="python",
                                                            expression=function)
        if function else None)


def _model_output(spec: Mapping[str, Any], threshold: float | None) -> ModelOutput:
    shape = [-1 if not isinstance(d, int) else d for d in spec.get("shape", [])] or [-1, 1, -1, -1]
    note = f"; change where p >= {threshold} (the card's threshold)" if threshold else ""
    return ModelOutput.create(
        name=str(spec["name"]), tasks=[TaskType.SEGMENTATION],
        result=ResultStructure.create(shape=shape,
                                      dim_order=["batch", "channel", "height", "width"],
                                      data_type=DataType(str(spec.get("dtype", "float32")))),
        description=f"{spec.get('units', 'p(change)')}{note}")


def model_item(card: Mapping[str, Any], onnx_href: str) -> pystac.Item:
    """The STAC MLM item of one model card; ``onnx_href`` is where its ONNX file is."""
    item = pystac.Item(
        id=item_id_for_card(card), geometry=None, bbox=None, datetime=None,
        start_datetime=TRAINING_START, end_datetime=TRAINING_END,
        collection=MODELS_COLLECTION,
        properties={
            "title": f"{card['name']} {card['version']} ({card.get('modality', '')})",
            "description": f"{card.get('architecture', '')}. {WEIGHTS_LICENSE_NOTE}",
            "license": WEIGHTS_LICENSE,
        })
    mlm = MLMExtension.ext(item, add_if_missing=True)
    mlm.apply(
        name=str(card["name"]), architecture=str(card.get("architecture", card.get("arch"))),
        tasks=[TaskType.SEGMENTATION],
        input=[_model_input(spec) for spec in card.get("inputs", [])],
        output=[_model_output(card["output"], card.get("threshold"))],
        framework="ONNX", framework_version=f"opset {card.get('onnx_opset', '')}".strip(),
        pretrained=False, accelerator=AcceleratorType.AMD64, accelerator_constrained=False,
        accelerator_summary="CPU (onnxruntime); any onnxruntime execution provider")
    for key, value in card.items():
        if key not in _MAPPED:
            item.properties[f"{PROPERTY_PREFIX}{key}"] = value
    asset = pystac.Asset(href=onnx_href, media_type=ONNX_MEDIA_TYPE,
                         roles=["mlm:model", "mlm:weights", "data"],
                         title=f"{card['name']} {card['version']} ONNX graph",
                         description=WEIGHTS_LICENSE_NOTE)
    item.add_asset("model", asset)
    AssetGeneralMLMExtension.ext(asset, add_if_missing=True).apply(
        artifact_type="onnx.ModelProto", compile_method="aot",
        entrypoint="monitor.adapters.onnx_model:OnnxChangeModel.load")
    FileExtension.ext(asset, add_if_missing=True).apply(
        size=int(card["onnx_bytes"]) if card.get("onnx_bytes") else None,
        checksum=f"1220{card['onnx_sha256']}" if card.get("onnx_sha256") else None)
    item.add_link(pystac.Link(rel="license", target=WEIGHTS_LICENSE_URL,
                              media_type="text/html",
                              title="CC BY-NC-SA 4.0 (the model weights)"))
    return item


def models_collection(cards: Iterable[Mapping[str, Any]]) -> pystac.Collection:
    cards = list(cards)
    collection = pystac.Collection(
        id=MODELS_COLLECTION, title="Urban Monitor change models",
        description="The change-detection models the inference workers run (ONNX), as STAC "
                    "MLM items made from their model cards. " + WEIGHTS_LICENSE_NOTE,
        extent=pystac.Extent(pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]]),
                             pystac.TemporalExtent([[TRAINING_START, TRAINING_END]])),
        license=WEIGHTS_LICENSE, keywords=["change detection", "Sentinel-2", "Sentinel-1",
                                           "U-Net", "ONNX"],
        summaries=pystac.Summaries({"mlm:name": sorted(str(c["name"]) for c in cards)}))
    MLMExtension.add_to(collection)
    collection.add_link(pystac.Link(rel="license", target=WEIGHTS_LICENSE_URL,
                                    media_type="text/html", title="CC BY-NC-SA 4.0"))
    return collection
