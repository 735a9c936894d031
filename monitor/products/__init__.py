"""Results as standard geospatial products: the change layers of a city state (COGs), their
STAC items and collections, and model cards as STAC MLM items. Pure: the layers are
arrays, the catalog entries are dictionaries; ``monitor.adapters.layer_store`` writes
them (GDAL's COG driver, fsspec) and ``services.api.stac`` serves them."""
