"""Rendering outputs for people: PNG map layers for the dashboard and the self-contained
HTML report of the demo. The pure colour logic lives in ``monitor.domain.rendering``."""
