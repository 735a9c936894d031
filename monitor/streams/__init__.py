"""Scene streams built from real imagery of labelled cities, and the stream benchmark.

``monitor.streams.oscd`` reads one OSCD city (two real Sentinel-2 acquisitions, the real
change label, and where present the real Sentinel-1 3-month means) onto a city grid;
``monitor.streams.simulate`` turns it into a dense time series (S2 every 5 days with
clouds, shadows and SCL; S1 every 12 days per orbit with speckle), each changed site
changing on one date between the two real acquisitions; ``monitor.streams.archive``
writes it as a STAC-served archive (COGs + items + truth) in the layout of the synthetic
archives; ``monitor.streams.benchmark`` runs such archives through the real pipeline and
scores the confirmed alerts against the truth.
"""
