"""Inference worker process: consumes SceneEvents, updates city states, emits ChangeEvents.

Run as many as the scenes topic has partitions (``urban-monitor serve inference``); Kafka's
consumer group gives each city (one partition) one owner at a time.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from monitor.domain.events import CloudEvent
from monitor.pipeline.consuming import EventLoop
from monitor.pipeline.inference import InferenceWorker, make_scene_handler
from monitor.pipeline.runtime import Runtime

log = logging.getLogger(__name__)


def build_worker(runtime: Runtime) -> InferenceWorker:
    from monitor.adapters.onnx_model import OnnxChangeModel
    from monitor.adapters.raster import RasterioSceneReader
    from monitor.adapters.signing import signer_for
    from monitor.adapters.state_store import StateStore
    from monitor.adapters.vectorise import extract_regions_from_state
    from monitor.domain.state import StateParams
    settings = runtime.settings
    return InferenceWorker(
        bus=runtime.bus, db=runtime.db, store=StateStore(settings.state.url),
        reader=RasterioSceneReader(),
        s2_model=OnnxChangeModel.load(settings.models.s2, threads=settings.models.threads,
                                      tile=settings.models.tile),
        s1_model=OnnxChangeModel.load(settings.models.s1, threads=settings.models.threads,
                                      tile=settings.models.tile),
        cities=runtime.cities,
        signers={name: signer for name, p in settings.providers.items()
                 if (signer := signer_for(p.signing)) is not None},
        changes_topic=settings.bus.changes_topic, region_extractor=extract_regions_from_state,
        state_params=StateParams.from_dict(settings.state.params))


def build_loop(runtime: Runtime, worker: InferenceWorker, client_id: str | None = None) -> EventLoop:
    from monitor.domain.events import SCENE_TYPE

    b = runtime.settings.bus
    consumer = runtime.bus.consumer(
        [b.scenes_topic], group_id=b.inference_group,
        client_id=client_id or f"inference-{socket.gethostname()}-{os.getpid()}")

    def record(event: CloudEvent | None, error: BaseException) -> None:
        if event is not None and runtime.db.scene(event.id) is not None:
            runtime.db.mark_scene(event.id, "dead_lettered", str(error))

    return EventLoop(runtime.bus, consumer, make_scene_handler(worker), expected_type=SCENE_TYPE,
                     dead_letter_topic=b.dead_letter_topic, group=b.inference_group,
                     on_dead_letter=record)


def run_inference(runtime: Runtime, stop: threading.Event) -> None:
    worker = build_worker(runtime)
    loop = build_loop(runtime, worker)
    log.info("inference worker consuming %s as group %s", runtime.settings.bus.scenes_topic,
             runtime.settings.bus.inference_group)
    try:
        loop.run(stop)
    finally:
        loop.consumer.close()
        log.info("inference worker stopped: %s", loop.stats)
