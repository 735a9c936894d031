"""Synthetic city archives: Sentinel-1/Sentinel-2 scenes of a simulated growing city.

Use ``monitor.synthetic.archive.generate_archive(out_dir, ArchiveParams(...))`` and
``load_archive(out_dir)``; serve one with ``monitor.adapters.stac_server.StacServer``.
See README.md in this folder for the physics, units, layout and truth. (Nothing is
imported here, so that `urban-monitor --help` stays fast.)
"""
