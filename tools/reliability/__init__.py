"""Reliability of the distributed pipeline (issue 9): load and fault injection.

- :mod:`tools.reliability.load`: many cities through Kafka, worker processes and
  alerting; throughput, latency, lag, memory.
- :mod:`tools.reliability.faults` (``urban-monitor reliability faults``): a small
  synthetic city replayed through discovery, inference worker processes and alerting,
  once without faults (the reference) and once per fault (worker kill -9, broker restart,
  database outage, STAC API down/slow/garbage, corrupt COG, webhook target down, failing
  state writes, duplicated and out-of-order events); each run is compared with the
  reference: every scene terminal, no alert lost or duplicated, the same final state.
"""
