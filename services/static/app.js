/* Urban Monitor dashboard — plain JS over Leaflet, no build step.
 *
 * Two modes, one renderer:
 *  - live: served by the API under /dashboard/; reads the OGC API - Features collections,
 *    the per-city map layers, the city overview (monthly series, SDG 11.3.1), the evidence
 *    of each alert (chips, timeline), and follows /alerts/stream (Server-Sent Events);
 *  - static: the demo's self-contained HTML report sets window.URBAN_MONITOR_DATA
 *    (see monitor/reporting/report.py) and everything renders without a server.
 *
 * What a city analyst sees first: a sentence saying what matters, the map with the
 * alerts worth acting on (provisional + confirmed; first detections, retractions and
 * withdrawals behind the status filter), filters kept in the URL so a view can be shared.
 * The filter rules are those of monitor/reporting/filters.py (the downloads apply them).
 *
 * Colours must match monitor/domain/rendering.py (a unit test compares them).
 */
(function () {
  "use strict";

  const STATUS_COLOURS = {
    first: "#fdb863",
    provisional: "#f46d43",
    confirmed: "#d7191c",
    retracted: "#9e9e9e",
    withdrawn: "#6d4c41",
  };
  const STATUS_LABELS = {
    first: "First detection", provisional: "Provisional", confirmed: "Confirmed", retracted: "Retracted", withdrawn: "Withdrawn",
  };
  const STATUSES = ["first", "provisional", "confirmed", "retracted", "withdrawn"];
  // The default view: alerts worth acting on (vocabulary.DEFAULT_FEED_STATUSES).
  const DEFAULT_STATUSES = ["provisional", "confirmed"];
  // What each status means and what an analyst should do with it.
  const LIFECYCLE = {
    first: ["One observation showed change evidence. Often noise (clouds, harvest, shadows).",
      "Nothing yet: wait for more observations. Hidden by default."],
    provisional: ["Evidence has built up over several observations; not final.",
      "Look at the before/after chips; watch it, or visit if it matters to you."],
    confirmed: ["Sustained evidence of new construction; final.",
      "Act on it: check permits and plans, update maps, schedule an inspection."],
    retracted: ["The evidence faded before confirmation: no lasting change.",
      "Ignore it. Hidden by default; kept for the record."],
    withdrawn: ["Was confirmed, then a year of contrary evidence withdrew it.",
      "Review anything decided on it. Hidden by default."],
  };
  const DATE_FIELDS = { first_detected: "first detected", confirmed: "confirmed", change_date: "change date" };
  // Time of change: viridis, older = purple, newer = yellow (as CHANGE_RAMP in Python).
  const CHANGE_RAMP = [[0.0, "#440154"], [0.25, "#3b528b"], [0.5, "#21918c"], [0.75, "#5ec962"], [1.0, "#fde725"]];
  const DAY_MS = 86400000;
  const RETRY_MS = 5000;

  // ------------------------------------------------------------------ small helpers
  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === "class") node.className = v;
      else if (k === "style") node.style.cssText = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  };
  const svg = (tag, attrs) => {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  };
  const toDay = (iso) => (iso ? Math.floor(Date.parse(String(iso).slice(0, 10) + "T00:00:00Z") / DAY_MS) : null);
  const fromDay = (day) => new Date(day * DAY_MS).toISOString().slice(0, 10);
  const fmtInt = (x) => Math.round(x).toLocaleString("en-GB");
  const fmtArea = (m2) => (m2 >= 10000 ? `${(m2 / 10000).toFixed(2)} ha` : `${fmtInt(m2)} m²`);
  const fmtHa = (m2) => { const ha = m2 / 10000; return `${ha >= 100 ? fmtInt(ha) : ha >= 10 ? ha.toFixed(0) : ha.toFixed(1)} ha`; };
  const fmtPct = (x) => `${Math.round(x * 100)} %`;
  const fmtKm2 = (m2) => (m2 === null || m2 === undefined ? "—" : `${(m2 / 1e6).toFixed(3)} km²`);
  const fmtRate = (x) => (x === null || x === undefined ? "—" : `${(Number(x) * 100).toFixed(2)} %/yr`);
  const hexToRgb = (h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16));
  const plural = (n, one, many) => `${fmtInt(n)} ${n === 1 ? one : many}`;

  function rampColour(fraction) {
    const f = Math.min(1, Math.max(0, Number.isFinite(fraction) ? fraction : 0));
    for (let i = 1; i < CHANGE_RAMP.length; i++) {
      const [p1, c1] = CHANGE_RAMP[i];
      const [p0, c0] = CHANGE_RAMP[i - 1];
      if (f <= p1) {
        const t = (f - p0) / (p1 - p0 || 1);
        const a = hexToRgb(c0), b = hexToRgb(c1);
        const mix = a.map((v, k) => Math.round(v + t * (b[k] - v)));
        return `rgb(${mix.join(",")})`;
      }
    }
    return CHANGE_RAMP[CHANGE_RAMP.length - 1][1];
  }

  function confidenceWords(c) {
    if (c >= 0.9) return "high";
    if (c >= 0.6) return "medium";
    return "low";
  }

  // ------------------------------------------------------------------ filters and the URL
  /** The view's filters; the same parameters as /cities/{id}/alerts/export.* take. */
  function defaultFilters() {
    return { statuses: new Set(DEFAULT_STATUSES), dateField: "first_detected", from: "", to: "", minConfidence: 0, minAreaHa: 0 };
  }

  /** The page's parameters: the query string, with hash parameters on top (the report
   *  is a file:// page, where the hash is what a shared link can carry). */
  function pageParams() {
    const params = new URLSearchParams(location.search);
    const hash = location.hash.replace(/^#/, "");
    if (hash.includes("=")) for (const [k, v] of new URLSearchParams(hash)) params.set(k, v);
    else if (hash && !params.has("city")) params.set("city", hash);
    return params;
  }

  function filtersFromParams(params) {
    const f = defaultFilters();
    const status = params.get("status");
    if (status !== null) f.statuses = new Set(status === "all" ? STATUSES : status.split(",").filter((s) => STATUSES.includes(s)));
    if (DATE_FIELDS[params.get("date_field")]) f.dateField = params.get("date_field");
    const isDate = (v) => /^\d{4}-\d{2}-\d{2}$/.test(v || "");
    if (isDate(params.get("from"))) f.from = params.get("from");
    if (isDate(params.get("to"))) f.to = params.get("to");
    const conf = Number(params.get("min_confidence"));
    if (Number.isFinite(conf) && conf > 0) f.minConfidence = Math.min(conf, 1);
    const area = Number(params.get("min_area_ha"));
    if (Number.isFinite(area) && area > 0) f.minAreaHa = area;
    return f;
  }

  /** Filters as query parameters (only those that differ from the default view). */
  function filterParams(f, { explicitStatus } = {}) {
    const params = new URLSearchParams();
    const statuses = STATUSES.filter((s) => f.statuses.has(s));
    const isDefault = statuses.length === DEFAULT_STATUSES.length && DEFAULT_STATUSES.every((s) => f.statuses.has(s));
    if (explicitStatus || !isDefault) params.set("status", statuses.length === STATUSES.length ? "all" : statuses.join(","));
    if (f.from || f.to) params.set("date_field", f.dateField);
    if (f.from) params.set("from", f.from);
    if (f.to) params.set("to", f.to);
    if (f.minConfidence > 0) params.set("min_confidence", String(f.minConfidence));
    if (f.minAreaHa > 0) params.set("min_area_ha", String(f.minAreaHa));
    return params;
  }

  /** Does an alert (its properties and status as shown) pass the filters, status aside? */
  function passesOtherFilters(p, f) {
    if ((p.confidence ?? 0) < f.minConfidence) return false;
    if ((p.area_m2 ?? 0) < f.minAreaHa * 10000) return false;
    if (!f.from && !f.to) return true;
    const day = p[f.dateField];
    if (!day) return false;
    const d = String(day).slice(0, 10);
    return (!f.from || d >= f.from) && (!f.to || d <= f.to);
  }

  // ------------------------------------------------------------------ data sources
  /** Live: the API. Paths are relative to the API root (the dashboard lives at /dashboard/). */
  class ApiSource {
    constructor() {
      const override = new URLSearchParams(location.search).get("api");
      this.root = new URL(override || "../", location.href);
      this.mode = "live";
    }
    url(path) { return new URL(path.replace(/^\//, ""), this.root).toString(); }
    async json(path) {
      let response;
      try {
        response = await fetch(this.url(path), { headers: { Accept: "application/geo+json, application/json" } });
      } catch (err) {
        throw new Error(`Cannot reach the Urban Monitor API at ${this.root} (${err.message})`);
      }
      if (!response.ok) {
        const error = new Error(`GET ${path} answered ${response.status} ${response.statusText}`);
        error.status = response.status;
        throw error;
      }
      return response.json();
    }
    async cities() {
      const fc = await this.json("/collections/cities/items?limit=1000");
      return (fc.features || []).map((f) => ({
        id: String(f.id ?? f.properties?.id ?? f.properties?.city_id),
        name: f.properties?.name || String(f.id),
        geometry: f.geometry || null,
        properties: f.properties || {},
      }));
    }
    async alerts(cityId) {
      // Every status, asked for by name: the page filters them itself, and the API's
      // default (the default feed) must not decide what the status filter can show.
      let path = `/collections/alerts/items?city=${encodeURIComponent(cityId)}&status=${STATUSES.join(",")}&limit=1000`;
      const features = [];
      for (let page = 0; path && page < 50; page++) {
        const fc = await this.json(path);
        features.push(...(fc.features || []));
        const next = (fc.links || []).find((l) => l.rel === "next");
        path = next ? new URL(next.href, this.root).pathname + new URL(next.href, this.root).search : null;
      }
      // Belt and braces: a server that ignores the city filter must not mix cities.
      return features.filter((f) => !f.properties?.city_id || f.properties.city_id === cityId);
    }
    async layers(city) {
      // No change state yet (404): no overlays; the map frames the city's AOI instead.
      let info = null;
      try {
        info = await this.json(`/cities/${encodeURIComponent(city.id)}/maps/info`);
      } catch (err) {
        if (err.status !== 404) throw err;
      }
      const base = `/cities/${encodeURIComponent(city.id)}/maps`;
      const stamp = `?t=${Date.now()}`; // a new state renders new layers: never reuse old ones
      return {
        bounds: info?.bounds || null,
        rgb: info?.has_rgb ? this.url(`${base}/rgb.png${stamp}`) : null,
        change: info?.has_change ? this.url(`${base}/change-overlay.png${stamp}`) : null,
        changeLegend: info?.change_legend || null,
      };
    }
    /** The time-of-change layer with the pixels of the statuses the filter shows. */
    changeUrl(layers, statuses) {
      if (!layers.change) return null;
      const shown = STATUSES.filter((s) => statuses.has(s));
      return shown.length ? `${layers.change}&status=${shown.join(",")}` : null;
    }
    async overview(cityId) {
      try {
        return await this.json(`/cities/${encodeURIComponent(cityId)}/overview`);
      } catch (err) {
        if (err.status === 404) return null;
        throw err;
      }
    }
    async evidence(cityId, alertId) {
      return this.json(`/cities/${encodeURIComponent(cityId)}/alerts/${encodeURIComponent(alertId)}/evidence`);
    }
    featureUrl(alertId) { return this.url(`/collections/alerts/items/${encodeURIComponent(alertId)}`); }
    sceneUrl(cityId, itemId) { return this.url(`/cities/${encodeURIComponent(cityId)}/scenes/${encodeURIComponent(itemId)}`); }
    exportUrl(cityId, format, filters) {
      return this.url(`/cities/${encodeURIComponent(cityId)}/alerts/export.${format}?${filterParams(filters, { explicitStatus: true })}`);
    }
    ogcUrl(cityId, filters) {
      const params = new URLSearchParams({ city: cityId, status: STATUSES.filter((s) => filters.statuses.has(s)).join(",") });
      if (filters.dateField === "first_detected" && (filters.from || filters.to)) params.set("datetime", `${filters.from || ".."}/${filters.to || ".."}`);
      params.set("limit", "1000");
      return this.url(`/collections/alerts/items?${params}`);
    }
    subscribe(onAlert, onState) {
      if (!window.EventSource) { onState("unsupported"); return; }
      const source = new EventSource(this.url(`/alerts/stream?status=${STATUSES.join(",")}`));
      const handle = (message) => {
        let event;
        try { event = JSON.parse(message.data); } catch (_) { return; }
        const data = event && event.data && event.data.alert_id ? event.data : (event && event.alert_id ? event : null);
        if (data) onAlert(data);
      };
      source.onmessage = handle;
      // Named SSE events (event: <CloudEvents type> or event: alert) are handled too.
      for (const name of ["alert", "alert.updated", "org.urbanmonitor.alert.updated.v1"]) source.addEventListener(name, handle);
      source.onopen = () => onState("live");
      source.onerror = () => onState(source.readyState === EventSource.CLOSED ? "closed" : "reconnecting");
      this.eventSource = source;
    }
  }

  /** Static: everything inline in window.URBAN_MONITOR_DATA (the demo report). */
  class StaticSource {
    constructor(data) {
      this.data = data;
      this.mode = "static";
    }
    async cities() {
      return (this.data.cities || []).map((c) => ({ id: String(c.id), name: c.name || String(c.id), geometry: c.geometry || null, properties: c }));
    }
    city(id) { return (this.data.cities || []).find((c) => String(c.id) === id) || {}; }
    async alerts(cityId) { return (this.city(cityId).alerts || {}).features || []; }
    async layers(city) {
      const c = this.city(city.id);
      return { bounds: c.bounds || boundsOfGeometry(c.geometry), rgb: c.rgb_png || null, change: c.change_png || null, changeLegend: c.change_legend || null };
    }
    async overview(cityId) { return this.city(cityId).overview || null; }
    changeUrl(layers) { return layers.change; } // one image: the active pixels
    async evidence(cityId, alertId) {
      const found = (this.city(cityId).evidence || {})[alertId];
      if (!found) { const e = new Error("not in this report"); e.status = 404; throw e; }
      return found;
    }
    featureUrl() { return null; }
    sceneUrl() { return null; }
    exportUrl() { return null; }
    ogcUrl() { return null; }
    subscribe(_onAlert, onState) { onState("static"); }
  }

  function boundsOfGeometry(geometry) {
    if (!geometry) return null;
    let w = Infinity, s = Infinity, e = -Infinity, n = -Infinity;
    const visit = (c) => {
      if (typeof c[0] === "number") {
        w = Math.min(w, c[0]); e = Math.max(e, c[0]); s = Math.min(s, c[1]); n = Math.max(n, c[1]);
      } else c.forEach(visit);
    };
    if (geometry.type === "GeometryCollection") geometry.geometries.forEach((g) => visit(g.coordinates));
    else visit(geometry.coordinates);
    return Number.isFinite(w) ? [w, s, e, n] : null;
  }
  const toLatLngBounds = (b) => L.latLngBounds([b[1], b[0]], [b[3], b[2]]);

  /** An AlertEvent's data (AlertData) as the GeoJSON feature the items endpoint returns. */
  function alertFeature(data) {
    const properties = Object.assign({}, data);
    delete properties.geometry;
    return { type: "Feature", id: data.alert_id, geometry: data.geometry, properties };
  }
  const alertIdOf = (f) => String(f.properties?.alert_id ?? f.id);

  /** Status of an alert as of a day: what the map showed then. */
  function statusAsOf(p, day, latest) {
    if (latest) return p.status;
    const retracted = toDay(p.retracted), confirmed = toDay(p.confirmed);
    if (retracted !== null && retracted <= day) return p.status === "withdrawn" ? "withdrawn" : "retracted";
    if (confirmed !== null && confirmed <= day) return "confirmed";
    if (p.status === "first" || p.status === "provisional") return p.status;
    return "provisional"; // confirmed or retracted later: it was detected, not yet confirmed
  }

  function downloadBlob(name, text, type) {
    const url = URL.createObjectURL(new Blob([text], { type }));
    const a = el("a", { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 5000);
  }

  // ------------------------------------------------------------------ the app
  class Dashboard {
    constructor(source) {
      this.source = source;
      this.cities = [];
      this.city = null;
      this.alerts = new Map(); // alert_id -> feature, for the current city
      this.pending = new Map(); // city_id -> [AlertData] seen live for other cities
      this.selectedId = null;
      this.colourBy = "status";
      this.dayRange = null; // [min, max]
      this.changeRange = null; // [start, end] days for date colouring
      this.overview = null;
      this.overlays = {};
      this.loadToken = 0;
      this.params = pageParams();
      this.filters = filtersFromParams(this.params);
      this.visible = [];
    }

    async start() {
      document.body.classList.add(this.source.mode === "static" ? "static-mode" : "live-mode");
      this.initMap();
      this.initFilters();
      $("colour-by").addEventListener("change", (e) => { this.colourBy = e.target.value; this.renderAlerts(); this.renderLegends(); });
      $("time-slider").addEventListener("input", () => this.onSlider());
      $("city-select").addEventListener("change", (e) => { this.selectCity(e.target.value); this.writeUrl(); });
      this.renderLifecycleLegend();
      if (this.source.mode === "static") this.renderStaticHeader();
      this.source.subscribe((data) => this.onLiveAlert(data), (state) => this.setLiveState(state));
      await this.loadCities();
    }

    // -------------------------------------------------------------- map
    initMap() {
      this.map = L.map("map", { zoomControl: true, attributionControl: true, preferCanvas: false, zoomSnap: 0.25 });
      this.map.setView([20, 0], 2);
      this.alertLayer = L.featureGroup().addTo(this.map);
      this.outlineLayer = L.featureGroup().addTo(this.map);
      const none = L.layerGroup();
      const osm = L.tileLayer("https://tile.openstreetmap.org/{z}/{x}/{y}.png", {
        maxZoom: 19, attribution: "© OpenStreetMap contributors",
      });
      this.baseLayers = { "No basemap (offline)": none, "OpenStreetMap (online)": osm };
      none.addTo(this.map);
      this.layerControl = L.control.layers(this.baseLayers, { "Alerts": this.alertLayer, "City outline": this.outlineLayer }, { collapsed: false }).addTo(this.map);
      L.control.scale({ imperial: false }).addTo(this.map);
      this.map.on("zoomend", () => { if (this.alerts.size) this.renderAlerts(); });
      this.map.attributionControl.setPrefix("Leaflet · Copernicus Sentinel data");
    }

    setOverlay(name, url, bounds, options) {
      const old = this.overlays[name];
      // Keep the user's choice: a replaced layer stays on (or off) as it was.
      const visible = old ? this.map.hasLayer(old) : options.show !== false;
      if (old) { this.map.removeLayer(old); this.layerControl.removeLayer(old); delete this.overlays[name]; }
      if (!url || !bounds) return;
      const layer = L.imageOverlay(url, toLatLngBounds(bounds), Object.assign({ interactive: false }, options));
      layer.on("error", () => {
        this.layerControl.removeLayer(layer);
        this.map.removeLayer(layer);
      });
      this.overlays[name] = layer;
      this.layerControl.addOverlay(layer, name);
      if (visible) layer.addTo(this.map);
      if (name.startsWith("RGB")) layer.bringToBack();
      this.alertLayer.bringToFront();
    }

    // -------------------------------------------------------------- filters
    initFilters() {
      for (const box of document.querySelectorAll("#filter-status input")) {
        box.addEventListener("change", () => {
          if (box.checked) this.filters.statuses.add(box.value); else this.filters.statuses.delete(box.value);
          this.onFiltersChanged();
        });
      }
      for (const swatch of document.querySelectorAll("#filter-status .swatch")) swatch.style.background = STATUS_COLOURS[swatch.dataset.status];
      $("filter-date-field").addEventListener("change", (e) => { this.filters.dateField = e.target.value; this.onFiltersChanged(); });
      $("filter-from").addEventListener("change", (e) => { this.filters.from = e.target.value; this.onFiltersChanged(); });
      $("filter-to").addEventListener("change", (e) => { this.filters.to = e.target.value; this.onFiltersChanged(); });
      $("filter-confidence").addEventListener("change", (e) => { this.filters.minConfidence = Math.max(0, Math.min(100, Number(e.target.value) || 0)) / 100; this.onFiltersChanged(); });
      $("filter-area").addEventListener("change", (e) => { this.filters.minAreaHa = Math.max(0, Number(e.target.value) || 0); this.onFiltersChanged(); });
      $("filter-reset").addEventListener("click", () => { this.filters = defaultFilters(); this.syncFilterInputs(); this.onFiltersChanged(); });
      $("share-link").addEventListener("click", async () => {
        this.writeUrl();
        try { await navigator.clipboard.writeText(location.href); this.flash("Link to this view copied"); } catch (_) { this.flash(`Link to this view: ${location.href}`); }
      });
      this.syncFilterInputs();
    }

    syncFilterInputs() {
      const f = this.filters;
      for (const box of document.querySelectorAll("#filter-status input")) box.checked = f.statuses.has(box.value);
      $("filter-date-field").value = f.dateField;
      $("filter-from").value = f.from;
      $("filter-to").value = f.to;
      $("filter-confidence").value = String(Math.round(f.minConfidence * 100));
      $("filter-area").value = String(f.minAreaHa);
    }

    onFiltersChanged() {
      this.writeUrl();
      this.renderAlerts();
      this.renderDownloads();
      // Live: the time-of-change layer follows the status filter too.
      const statuses = STATUSES.filter((s) => this.filters.statuses.has(s)).join(",");
      if (this.source.mode === "live" && this.layers && statuses !== this.overlayStatuses) {
        this.overlayStatuses = statuses;
        this.setOverlay("Time of change", this.source.changeUrl(this.layers, this.filters.statuses), this.layers.bounds, { opacity: 0.85, className: "layer-change" });
      }
    }

    /** The view in the URL: the query string when the page may change it, else the hash. */
    writeUrl() {
      const params = filterParams(this.filters);
      if (this.city) params.set("city", this.city.id);
      if (this.selectedId) params.set("alert", this.selectedId);
      const keep = new URLSearchParams(location.search);
      if (keep.get("api")) params.set("api", keep.get("api"));
      const query = params.toString();
      if (this.source.mode === "static") {
        const url = `${location.pathname}${location.search}${query ? "#" + query : ""}`;
        try { history.replaceState(null, "", url); } catch (_) { location.hash = query; }
        return;
      }
      history.replaceState(null, "", `${location.pathname}${query ? "?" + query : ""}`);
    }

    // -------------------------------------------------------------- cities
    async loadCities() {
      try {
        this.cities = await this.source.cities();
        this.hideBanner();
      } catch (err) {
        this.showBanner(`${err.message}. Retrying in ${RETRY_MS / 1000} s…`);
        this.showEmpty("Waiting for the API", "The map fills in as soon as the Urban Monitor API answers.");
        setTimeout(() => this.loadCities(), RETRY_MS);
        return;
      }
      const select = $("city-select");
      select.replaceChildren();
      if (!this.cities.length) {
        select.append(el("option", { value: "" }, "no cities"));
        this.showEmpty("No cities configured", "Add a city (urban-monitor cities add) and its alerts appear here.");
        $("headline-text").textContent = "No cities are monitored yet.";
        document.body.dataset.state = "ready";
        return;
      }
      for (const c of this.cities) select.append(el("option", { value: c.id }, c.name));
      const wanted = this.params.get("city");
      const first = this.cities.find((c) => c.id === wanted) || this.cities[0];
      select.value = first.id;
      await this.selectCity(first.id, this.params.get("alert"));
    }

    async selectCity(cityId, alertId) {
      const city = this.cities.find((c) => c.id === cityId);
      if (!city) return;
      const token = ++this.loadToken;
      this.city = city;
      this.selectedId = null;
      this.renderDetails(null);
      document.body.dataset.state = "loading";
      $("chart-city").textContent = `· ${city.name}`;
      this.outlineLayer.clearLayers();
      if (city.geometry) {
        L.geoJSON(city.geometry, { interactive: false, style: { color: "#ffffff", weight: 1.5, dashArray: "5 5", fill: false, opacity: 0.8 } }).addTo(this.outlineLayer);
      }
      let features, layers, overview;
      try {
        [features, layers, overview] = await Promise.all([
          this.source.alerts(city.id), this.source.layers(city), this.source.overview(city.id),
        ]);
        this.hideBanner();
      } catch (err) {
        if (token !== this.loadToken) return;
        this.showBanner(`Could not load ${city.name}: ${err.message}. Retrying in ${RETRY_MS / 1000} s…`);
        setTimeout(() => { if (token === this.loadToken) this.selectCity(cityId); }, RETRY_MS);
        return;
      }
      if (token !== this.loadToken) return; // the user picked another city meanwhile
      this.alerts = new Map(features.map((f) => [alertIdOf(f), f]));
      for (const data of this.pending.get(city.id) || []) this.upsert(alertFeature(data));
      this.pending.delete(city.id);
      this.layers = layers;
      this.changeLegend = layers.changeLegend;
      this.overview = overview;
      this.setOverlay("RGB composite (latest clear)", layers.rgb, layers.bounds, { opacity: 1, show: true, className: "layer-rgb" });
      this.setOverlay("Time of change", this.source.changeUrl(layers, this.filters.statuses), layers.bounds, { opacity: 0.85, show: true, className: "layer-change" });
      this.overlayStatuses = STATUSES.filter((s) => this.filters.statuses.has(s)).join(",");
      const bounds = layers.bounds ? toLatLngBounds(layers.bounds) : null;
      this.computeRanges(true);
      this.renderAlerts();
      this.renderLegends();
      this.renderCharts();
      this.renderDownloads();
      if (bounds) this.map.fitBounds(bounds, { padding: [10, 10] });
      else if (this.alerts.size) this.map.fitBounds(this.alertLayer.getBounds(), { padding: [30, 30], maxZoom: 15 });
      else if (city.geometry) this.map.fitBounds(toLatLngBounds(boundsOfGeometry(city.geometry)));
      if (alertId && this.alerts.has(alertId)) this.select(alertId);
      document.body.dataset.state = "ready";
    }

    // -------------------------------------------------------------- alerts
    upsert(feature) {
      const id = alertIdOf(feature);
      const old = this.alerts.get(id);
      if (old && (old.properties.revision || 0) > (feature.properties.revision || 0)) return false;
      this.alerts.set(id, feature);
      return true;
    }

    onLiveAlert(data) {
      if (!this.city || data.city_id !== this.city.id) {
        const list = this.pending.get(data.city_id) || [];
        list.push(data);
        this.pending.set(data.city_id, list);
        return;
      }
      const atEnd = this.isSliderAtEnd();
      if (!this.upsert(alertFeature(data))) return;
      this.computeRanges(atEnd);
      this.renderAlerts();
      this.renderLegends();
      if (this.selectedId === data.alert_id) this.renderDetails(this.alerts.get(data.alert_id));
      const hidden = this.filters.statuses.has(data.status) ? "" : " (hidden by the status filter)";
      this.flash(`Alert ${data.status}: ${fmtArea(data.area_m2)} (revision ${data.revision})${hidden}`);
      this.scheduleLayerRefresh();
    }

    /** New alerts mean a new state: re-read the overlays, at most every few seconds. */
    scheduleLayerRefresh() {
      if (this.source.mode !== "live" || this.refreshTimer) return;
      const city = this.city;
      this.refreshTimer = setTimeout(async () => {
        this.refreshTimer = null;
        if (city !== this.city) return;
        try {
          const layers = await this.source.layers(city);
          if (city !== this.city) return;
          this.layers = layers;
          this.changeLegend = layers.changeLegend || this.changeLegend;
          this.setOverlay("RGB composite (latest clear)", layers.rgb, layers.bounds, { opacity: 1, className: "layer-rgb" });
          this.setOverlay("Time of change", this.source.changeUrl(layers, this.filters.statuses), layers.bounds, { opacity: 0.85, className: "layer-change" });
          this.computeRanges(this.isSliderAtEnd());
          this.renderLegends();
        } catch (err) {
          console.warn("layer refresh failed", err);
        }
      }, 3000);
    }

    computeRanges(moveToEnd) {
      const days = [];
      for (const f of this.alerts.values()) {
        const p = f.properties;
        for (const k of ["first_detected", "confirmed", "retracted"]) if (p[k]) days.push(toDay(p[k]));
      }
      const slider = $("time-slider");
      if (!days.length) {
        this.dayRange = null;
        slider.disabled = true;
        $("time-min").textContent = ""; $("time-max").textContent = ""; $("time-label").textContent = "—";
      } else {
        const lo = Math.min(...days), hi = Math.max(...days);
        const keep = moveToEnd ? null : Number(slider.value);
        this.dayRange = [lo, hi];
        slider.disabled = false;
        slider.min = String(lo);
        slider.max = String(hi);
        slider.value = String(keep === null ? hi : Math.min(Math.max(keep, lo), hi));
        $("time-min").textContent = fromDay(lo);
        $("time-max").textContent = fromDay(hi);
      }
      // Date colouring: the time-of-change layer's own range when known, so both agree.
      const changeDays = [...this.alerts.values()].map((f) => toDay(f.properties.change_date || f.properties.first_detected)).filter((d) => d !== null);
      if (this.changeLegend) this.changeRange = [toDay(this.changeLegend.start), toDay(this.changeLegend.end)];
      else if (changeDays.length) this.changeRange = [Math.min(...changeDays), Math.max(...changeDays)];
      else this.changeRange = null;
      this.updateSliderLabel();
    }

    isSliderAtEnd() {
      const s = $("time-slider");
      return !this.dayRange || Number(s.value) >= Number(s.max);
    }

    onSlider() {
      this.updateSliderLabel();
      this.renderAlerts();
    }

    updateSliderLabel() {
      if (!this.dayRange) return;
      $("time-label").textContent = this.isSliderAtEnd() ? `${fromDay(Number($("time-slider").value))} (latest)` : fromDay(Number($("time-slider").value));
    }

    colourOf(p, status) {
      if (this.colourBy === "date" && this.changeRange) {
        const d = toDay(p.change_date || p.first_detected);
        const [a, b] = this.changeRange;
        return rampColour(b > a ? (d - a) / (b - a) : 1);
      }
      return STATUS_COLOURS[status] || "#888";
    }

    /** The alerts as of the slider's day, each with its status then, split into those the
     *  filters show and those only the status filter hides. */
    classify() {
      const latest = this.isSliderAtEnd();
      const day = this.dayRange ? Number($("time-slider").value) : Infinity;
      const shown = [], hiddenByStatus = [];
      for (const f of this.alerts.values()) {
        const p = f.properties;
        const first = toDay(p.first_detected);
        if (first !== null && first > day) continue;
        const status = statusAsOf(p, day, latest);
        if (!passesOtherFilters(p, this.filters)) continue;
        (this.filters.statuses.has(status) ? shown : hiddenByStatus).push({ f, status });
      }
      return { shown, hiddenByStatus };
    }

    renderAlerts() {
      this.alertLayer.clearLayers();
      const { shown, hiddenByStatus } = this.classify();
      const counts = { first: 0, provisional: 0, confirmed: 0, retracted: 0, withdrawn: 0 };
      for (const { status } of shown.concat(hiddenByStatus)) counts[status] = (counts[status] || 0) + 1;
      // Confirmed on top: draw the others first.
      const order = { retracted: 0, withdrawn: 1, first: 2, provisional: 3, confirmed: 4 };
      shown.sort((a, b) => order[a.status] - order[b.status]);
      for (const { f, status } of shown) this.drawAlert(f, status);
      this.visible = shown;
      this.renderCounts(counts, shown.length);
      this.renderHeadline(shown, hiddenByStatus);
      if (!this.alerts.size) {
        this.showEmpty("No alerts yet", this.source.mode === "static"
          ? "This run found no urban change in this city."
          : "New urban change appears here as soon as it is detected — no reload needed.");
      } else if (!shown.length) {
        this.showEmpty("No alert matches the filters", "Tick more statuses, widen the dates or lower the minimum confidence and area.");
      } else {
        this.hideEmpty();
      }
      document.body.dataset.alerts = String(shown.length);
    }

    drawAlert(f, status) {
      const p = f.properties;
      const colour = this.colourOf(p, status);
      const id = alertIdOf(f);
      const selected = id === this.selectedId;
      const faded = status === "retracted" || status === "withdrawn";
      const style = {
        color: faded ? "#bdbdbd" : "#ffffff", weight: selected ? 4 : 1.5, opacity: 0.95,
        fillColor: colour, fillOpacity: faded ? 0.25 : 0.6, dashArray: faded ? "4 4" : null,
        className: `alert-shape alert-${status}${selected ? " alert-selected" : ""}`,
      };
      // Path options (className included) must be given at creation, not via style().
      const shape = L.geoJSON(f.geometry, Object.assign({}, style, { style: () => style }));
      const tip = `${STATUS_LABELS[status]} · ${fmtArea(p.area_m2)} · confidence ${fmtPct(p.confidence ?? 0)} · ${p.first_detected}`;
      shape.on("click", (e) => { L.DomEvent.stopPropagation(e); this.select(id); });
      shape.bindTooltip(tip, { sticky: true });
      shape.addTo(this.alertLayer);
      shape.eachLayer((layer) => { const path = layer.getElement && layer.getElement(); if (path) path.setAttribute("data-alert-id", id); });
      // Small sites vanish at city zoom: a marker keeps every shown alert visible and
      // clickable until its outline is big enough on screen to see and click.
      const sb = shape.getBounds();
      const nw = this.map.latLngToLayerPoint(sb.getNorthWest()), se = this.map.latLngToLayerPoint(sb.getSouthEast());
      if (Math.min(Math.abs(se.x - nw.x), Math.abs(se.y - nw.y)) >= 28) return;
      const marker = L.circleMarker(sb.getCenter(), {
        radius: selected ? 8 : status === "confirmed" ? 7 : 5, color: selected ? "#1f6feb" : "#ffffff", weight: selected ? 3 : 1.5,
        fillColor: colour, fillOpacity: faded ? 0.4 : 0.95,
        className: `alert-marker alert-marker-${status}`,
      });
      marker.on("click", (e) => { L.DomEvent.stopPropagation(e); this.select(id); });
      marker.bindTooltip(tip);
      marker.addTo(this.alertLayer);
      marker.getElement().setAttribute("data-alert-id", id);
    }

    renderCounts(counts, shown) {
      const box = $("counts");
      box.replaceChildren();
      for (const s of STATUSES) {
        box.append(el("div", { class: `count count-${s}${this.filters.statuses.has(s) ? "" : " count-off"}`, "data-status": s },
          el("span", { class: "swatch", style: `background:${STATUS_COLOURS[s]}` }),
          el("span", { class: "label" }, STATUS_LABELS[s]),
          el("span", { class: "n" }, String(counts[s] || 0))));
      }
      const total = this.alerts.size;
      box.append(el("div", { class: "count total", id: "count-total" },
        total ? `${shown} of ${total} alert${total === 1 ? "" : "s"} shown` : "no alerts yet"));
    }

    /** The sentence at the top: what matters, in plain words. */
    renderHeadline(shown, hiddenByStatus) {
      const text = $("headline-text"), sub = $("headline-hidden");
      if (!this.city) return;
      if (!this.alerts.size) {
        text.textContent = `${this.city.name}: no urban change detected yet.`;
        sub.textContent = "";
        return;
      }
      const of = (list, s) => list.filter((x) => x.status === s);
      const confirmed = of(shown, "confirmed"), provisional = of(shown, "provisional");
      const area = confirmed.reduce((a, x) => a + (x.f.properties.area_m2 || 0), 0);
      const f = this.filters;
      const since = f.from ? `${DATE_FIELDS[f.dateField]} from ${f.from}` : `since ${this.overview?.start || this.earliest() || "the start"}`;
      const until = f.to ? ` to ${f.to}` : "";
      const parts = [];
      if (f.statuses.has("confirmed")) parts.push(`${plural(confirmed.length, "confirmed new construction site", "confirmed new construction sites")}, ${fmtHa(area)}, ${since}${until}`);
      if (f.statuses.has("provisional")) parts.push(`${fmtInt(provisional.length)} provisional`);
      for (const s of ["first", "retracted", "withdrawn"]) if (f.statuses.has(s)) parts.push(`${fmtInt(of(shown, s).length)} ${STATUS_LABELS[s].toLowerCase()}`);
      const extra = [];
      if (f.minConfidence > 0) extra.push(`confidence ≥ ${fmtPct(f.minConfidence)}`);
      if (f.minAreaHa > 0) extra.push(`area ≥ ${f.minAreaHa} ha`);
      text.textContent = `${this.city.name}: ${parts.join("; ") || "no status selected"}${extra.length ? ` (${extra.join(", ")})` : ""}.`;
      const hidden = STATUSES.filter((s) => !f.statuses.has(s)).map((s) => [s, of(hiddenByStatus, s).length]).filter(([, n]) => n > 0);
      sub.textContent = hidden.length ? `Not on the map: ${hidden.map(([s, n]) => `${fmtInt(n)} ${STATUS_LABELS[s].toLowerCase()}`).join(", ")} — tick them under Filters › Status.` : "";
    }

    earliest() {
      const days = [...this.alerts.values()].map((f) => f.properties.first_detected).filter(Boolean).sort();
      return days[0] || null;
    }

    select(id) {
      this.selectedId = id;
      this.renderAlerts();
      this.renderDetails(this.alerts.get(id));
      this.writeUrl();
    }

    renderDetails(feature) {
      const box = $("details");
      box.replaceChildren();
      if (!feature) {
        box.append(el("p", { class: "muted" }, this.alerts && this.alerts.size ? "Click an alert on the map." : "No alert selected."));
        return;
      }
      const p = feature.properties;
      const id = alertIdOf(feature);
      const badge = el("span", { class: "status-badge", style: `background:${STATUS_COLOURS[p.status] || "#888"}` }, STATUS_LABELS[p.status] || p.status);
      box.append(el("p", { class: "advice" }, badge, " ", (LIFECYCLE[p.status] || ["", ""])[1]));
      const rows = [
        ["Status", STATUS_LABELS[p.status] || p.status],
        ["Area", `${fmtArea(p.area_m2)} (${fmtInt(p.area_m2)} m²)`],
        ["Confidence", `${fmtPct(p.confidence ?? 0)} (${confidenceWords(p.confidence ?? 0)})`],
        ["Change date", p.change_date || "—"],
        ["First detected", p.first_detected || "—"],
        ["Confirmed", p.confirmed || "—"],
        ["Retracted", p.retracted || "—"],
        ["Revision", String(p.revision ?? "—")],
        ["Model version", p.model_version || "—"],
        ["Alert id", el("span", { class: "alert-id" }, id)],
      ];
      const table = el("table", { id: "details-table" });
      for (const [k, v] of rows) table.append(el("tr", {}, el("th", {}, k), el("td", {}, v)));
      const scenes = Array.isArray(p.scene_ids) ? p.scene_ids : String(p.scene_ids || "").split(",").filter(Boolean);
      const sceneItems = scenes.map((s) => {
        const href = this.source.sceneUrl(this.city.id, s);
        return href ? el("a", { href, target: "_blank", rel: "noopener" }, s) : el("span", {}, s);
      });
      table.append(el("tr", {}, el("th", {}, `Scenes (${scenes.length})`),
        el("td", {}, scenes.length ? el("div", { class: "scenes" }, ...sceneItems.flatMap((s, i) => (i ? [el("br"), s] : [s]))) : "—")));
      box.append(table);
      // Links: the feature in the OGC API, its GeoJSON.
      const links = el("p", { class: "links", id: "details-links" });
      const featureUrl = this.source.featureUrl(id);
      if (featureUrl) {
        links.append(el("a", { href: featureUrl, target: "_blank", rel: "noopener", id: "link-feature" }, "Feature (OGC API)"), " · ",
          el("a", { href: `${featureUrl}?f=json`, download: `${id}.geojson`, id: "link-geojson" }, "GeoJSON"));
      } else {
        const a = el("a", { href: "#", id: "link-geojson" }, "GeoJSON");
        a.addEventListener("click", (e) => { e.preventDefault(); downloadBlob(`${id}.geojson`, JSON.stringify(feature), "application/geo+json"); });
        links.append(a);
      }
      box.append(links);
      const evidence = el("div", { id: "evidence", class: "evidence" }, el("p", { class: "muted" }, "Loading the before/after chips…"));
      box.append(evidence);
      this.loadEvidence(id, p.revision, evidence);
    }

    async loadEvidence(id, revision, box) {
      let found;
      try {
        found = await this.source.evidence(this.city.id, id);
      } catch (err) {
        if (this.selectedId !== id) return;
        box.replaceChildren(el("p", { class: "muted", id: "evidence-missing" }, err.status === 404
          ? (this.source.mode === "static" ? "Before/after chips of this alert are in the live dashboard (serve the demo's database)." : "No evidence for this alert yet.")
          : `The evidence could not be loaded: ${err.message}`));
        return;
      }
      if (this.selectedId !== id) return;
      box.replaceChildren();
      const chips = el("div", { class: "chips" });
      for (const side of ["before", "after"]) {
        const s = found[side];
        const caption = s ? `${side === "before" ? "Before" : "After"} · ${s.acquired} · ${Math.round((s.clear_fraction ?? 0) * 100)} % clear` : `${side === "before" ? "Before" : "After"}: no clear S2 scene`;
        const figure = el("figure", { class: "chip" });
        if (s && s.png) figure.append(el("img", { src: s.png, id: `chip-${side}`, class: "chip-img", alt: `${side} the change, ${s.acquired}`, title: s.item_id }));
        else figure.append(el("div", { class: "chip-img chip-none" }, "—"));
        figure.append(el("figcaption", {}, caption));
        chips.append(figure);
      }
      box.append(el("div", { class: "legend-title" }, "Sentinel-2 true colour, alert outlined in cyan"), chips);
      box.append(this.renderTimeline(found));
    }

    /** The observation timeline: the city's scenes around the alert, those that moved it
     *  filled, and its lifecycle dates as lines. */
    renderTimeline(found) {
      const wrap = el("div", { class: "timeline", id: "timeline" });
      const rows = found.timeline || [];
      const events = found.events || [];
      const days = rows.map((r) => toDay(r.date)).concat(events.map((e) => toDay(e.date))).filter((d) => d !== null);
      wrap.append(el("div", { class: "legend-title" }, `Observation timeline (${rows.length} scenes; filled: scenes that moved this alert)`));
      if (!days.length) return wrap;
      const width = 300, height = 74, m = { l: 8, r: 8 };
      const d0 = Math.min(...days) - 3, d1 = Math.max(...days) + 3;
      const sx = (d) => m.l + ((d - d0) / (d1 - d0 || 1)) * (width - m.l - m.r);
      const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, id: "timeline-svg", role: "img", "aria-label": "Observation timeline" });
      const lanes = { s2: 22, s1: 40 };
      for (const [mod, y] of Object.entries(lanes)) {
        root.append(svg("line", { x1: m.l, x2: width - m.r, y1: y, y2: y, class: "lane" }));
        const t = svg("text", { x: m.l, y: y - 5, class: "lane-label" }); t.textContent = mod.toUpperCase(); root.append(t);
      }
      const colours = { change_date: "#1f6feb", first_detected: STATUS_COLOURS.first, confirmed: STATUS_COLOURS.confirmed, retracted: STATUS_COLOURS.retracted };
      for (const e of events) {
        const x = sx(toDay(e.date));
        const line = svg("line", { x1: x, x2: x, y1: 8, y2: 50, class: `event event-${e.kind}`, stroke: colours[e.kind] || "#333" });
        const title = svg("title"); title.textContent = `${e.label}: ${e.date}`; line.append(title);
        root.append(line);
      }
      for (const r of rows) {
        const c = svg("circle", { cx: sx(toDay(r.date)), cy: lanes[r.modality] || 40, r: r.moved_alert ? 3.6 : 2.6, class: `obs obs-${r.modality}${r.moved_alert ? " obs-moved" : ""}` });
        const title = svg("title"); title.textContent = `${r.date} ${r.modality.toUpperCase()} ${r.item_id}${r.cloud_cover !== null && r.cloud_cover !== undefined ? ` · ${Math.round(r.cloud_cover)} % cloud` : ""}`;
        c.append(title);
        root.append(c);
      }
      const t0 = svg("text", { x: m.l, y: height - 4, class: "lane-label" }); t0.textContent = fromDay(d0 + 3);
      const t1 = svg("text", { x: width - m.r, y: height - 4, class: "lane-label", "text-anchor": "end" }); t1.textContent = fromDay(d1 - 3);
      root.append(t0, t1);
      wrap.append(root);
      wrap.append(el("div", { class: "timeline-keys" }, ...events.map((e) => el("span", { class: "key" }, el("span", { class: "tick", style: `background:${colours[e.kind] || "#333"}` }), `${e.label} ${e.date}`))));
      wrap.append(this.renderEvidenceChart(rows, sx, width, m));
      return wrap;
    }

    /** What each scene said about the site (the state's site log): p(change) over the
     *  footprint's clear pixels as dots (hollow: mostly cloudy), the CUSUM evidence as a
     *  line. Same time axis as the timeline above. */
    renderEvidenceChart(rows, sx, width, m) {
      const seen = rows.filter((r) => r.p_change !== null && r.p_change !== undefined || r.evidence !== null && r.evidence !== undefined);
      const box = el("div", { class: "evidence-chart", id: "evidence-chart" });
      if (!seen.length) {
        box.append(el("div", { class: "muted" }, "No per-scene p(change) is recorded for this site (it is logged from the first detection on, and kept a year after confirmation)."));
        return box;
      }
      box.append(el("div", { class: "legend-title" }, "What each scene said about the site: p(change) (dots, hollow when under half of it was seen) and evidence (line)"));
      const height = 70, top = 6, bottom = 58;
      const sy = (p) => bottom - p * (bottom - top);
      const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, id: "evidence-svg", role: "img", "aria-label": "p(change) and evidence per scene" });
      for (const p of [0, 0.5, 1]) {
        root.append(svg("line", { x1: m.l, x2: width - m.r, y1: sy(p), y2: sy(p), class: "lane" }));
        const t = svg("text", { x: width - m.r, y: sy(p) - 1, class: "lane-label", "text-anchor": "end" }); t.textContent = p.toFixed(1); root.append(t);
      }
      const ev = seen.filter((r) => r.evidence !== null && r.evidence !== undefined);
      const maxEv = Math.max(1e-6, ...ev.map((r) => r.evidence));
      if (ev.length > 1) {
        const pts = ev.map((r) => `${sx(toDay(r.date)).toFixed(1)},${sy(r.evidence / maxEv).toFixed(1)}`).join(" ");
        root.append(svg("polyline", { points: pts, class: "evidence-line", fill: "none", stroke: "#8250df", "stroke-width": 1.4 }));
      }
      for (const r of seen) {
        if (r.p_change === null || r.p_change === undefined) continue;
        const hollow = r.clear_share !== null && r.clear_share < 0.5;
        const c = svg("circle", { cx: sx(toDay(r.date)), cy: sy(r.p_change), r: 2.8, class: `pchange pchange-${r.modality}${hollow ? " pchange-cloudy" : ""}`,
          fill: hollow ? "none" : (r.modality === "s1" ? "#bf8700" : "#1a7f37"), stroke: r.modality === "s1" ? "#bf8700" : "#1a7f37" });
        const title = svg("title");
        title.textContent = `${r.date} ${r.modality.toUpperCase()} · p(change) ${r.p_change.toFixed(2)} · evidence ${r.evidence} · ${Math.round((r.clear_share || 0) * 100)} % of the site seen · site ${r.site_status}`;
        c.append(title);
        root.append(c);
      }
      box.append(root);
      return box;
    }

    // -------------------------------------------------------------- legends
    renderLifecycleLegend() {
      const box = $("lifecycle-legend");
      box.replaceChildren();
      const list = el("dl", { class: "lifecycle", id: "lifecycle-list" });
      for (const s of ["first", "provisional", "confirmed", "retracted", "withdrawn"]) {
        list.append(el("dt", {}, el("span", { class: `swatch${s === "retracted" || s === "withdrawn" ? " dashed" : ""}`, style: `background:${STATUS_COLOURS[s]}` }), STATUS_LABELS[s]),
          el("dd", {}, LIFECYCLE[s][0], " ", el("strong", {}, "What to do: "), LIFECYCLE[s][1]));
      }
      box.append(el("p", { class: "hint" }, "An alert is one construction site. It moves first → provisional → confirmed as evidence builds up over observations; if the evidence fades first, it is retracted."), list);
      box.append(el("p", { class: "hint", id: "confidence-legend" }, el("strong", {}, "Confidence "),
        "(0–100 %) is how much evidence the site has gathered relative to what confirmation needs: confirmed alerts have at least 50 %, retracted ones at most 50 %. "
        + "It ranks alerts (high ≥ 90 %, medium ≥ 60 %, low below); it is not a probability."));
    }

    renderLegends() {
      const statusBox = $("status-legend");
      statusBox.replaceChildren();
      if (this.colourBy === "date") {
        statusBox.append(el("div", { class: "row muted" }, "Alerts coloured by their date of change (scale below); retracted ones dashed."));
      }
      const box = $("change-legend");
      box.replaceChildren();
      const range = this.changeRange;
      const hasLayer = Boolean(this.layers && this.layers.change);
      if (!range && !hasLayer) return;
      const whose = this.source.mode === "live" ? "pixels of the statuses shown" : "first, provisional and confirmed pixels";
      box.append(el("div", { class: "legend-title" }, hasLayer ? `Time of change (map layer: ${whose})` : "Date of change"));
      const gradient = CHANGE_RAMP.map(([p, c]) => `${c} ${p * 100}%`).join(", ");
      box.append(el("div", { class: "ramp", style: `background: linear-gradient(to right, ${gradient})` }));
      const ticks = el("div", { class: "ramp-ticks" });
      const legendTicks = this.changeLegend && this.changeLegend.ticks;
      const list = legendTicks && legendTicks.length ? legendTicks.filter((_, i, a) => a.length <= 3 || i % 2 === 0 || i === a.length - 1)
        : range ? [{ position: 0, label: fromDay(range[0]) }, { position: 1, label: fromDay(range[1]) }] : [];
      for (const t of list) ticks.append(el("span", { style: `left:${t.position * 100}%` }, t.label));
      box.append(ticks);
    }

    // -------------------------------------------------------------- downloads
    renderDownloads() {
      const box = $("download-links");
      box.replaceChildren();
      if (!this.city) return;
      const f = this.filters;
      const n = this.visible.length;
      const list = el("ul", { class: "download-list" });
      const geojson = this.source.exportUrl(this.city.id, "geojson", f);
      if (geojson) {
        list.append(el("li", {}, el("a", { href: geojson, id: "download-geojson", download: `${this.city.id}-alerts.geojson` }, `Shown alerts (${n}) as GeoJSON`)));
        list.append(el("li", {}, el("a", { href: this.source.exportUrl(this.city.id, "gpkg", f), id: "download-gpkg", download: `${this.city.id}-alerts.gpkg` }, `Shown alerts (${n}) as GeoPackage`)));
        list.append(el("li", {}, el("a", { href: this.source.ogcUrl(this.city.id, f), id: "download-ogc", target: "_blank", rel: "noopener" }, "The same in the OGC API – Features"),
          el("span", { class: "muted" }, " (status and first-detection dates; QGIS and GDAL read it)")));
      } else {
        const a = el("a", { href: "#", id: "download-geojson" }, `Shown alerts (${n}) as GeoJSON`);
        a.addEventListener("click", (e) => {
          e.preventDefault();
          downloadBlob(`${this.city.id}-alerts.geojson`, JSON.stringify({ type: "FeatureCollection", features: this.visible.map((x) => x.f) }), "application/geo+json");
        });
        list.append(el("li", {}, a), el("li", { class: "muted" }, "GeoPackage and the COG change layers: in the live dashboard."));
      }
      const layers = this.overview && this.overview.layers;
      if (layers && layers.assets && Object.keys(layers.assets).length) {
        const cogs = el("ul", { class: "cog-list", id: "download-cogs" });
        for (const [key, a] of Object.entries(layers.assets)) cogs.append(el("li", {}, el("a", { href: a.href, class: "cog-link" }, a.title || key)));
        list.append(el("li", {}, el("a", { href: layers.item, target: "_blank", rel: "noopener", id: "download-stac" }, `Change layers of the city (COG, STAC item v${layers.version}${layers.datetime ? ", " + String(layers.datetime).slice(0, 10) : ""})`), cogs));
      } else if (this.source.mode === "live") {
        list.append(el("li", { class: "muted" }, "No COG change layers published for this city yet."));
      }
      box.append(list);
    }

    // -------------------------------------------------------------- charts
    renderCharts() {
      const o = this.overview;
      const months = (o && o.months) || [];
      const note = $("chart-note");
      note.textContent = "";
      const withBuilt = months.filter((m) => m.built_up_m2 !== null && m.built_up_m2 !== undefined);
      if (withBuilt.length >= 2) {
        lineChart($("chart"), withBuilt.map((m) => ({ month: m.month, value: m.built_up_m2 / 1e6 })), { id: "chart-svg", lineId: "chart-line", unit: "km²", label: "Built-up area (km²)" });
      } else if (months.length >= 2) {
        let total = 0;
        lineChart($("chart"), months.map((m) => ({ month: m.month, value: (total += m.new_confirmed_m2) / 1e4 })), { id: "chart-svg", lineId: "chart-line", unit: "ha", label: "Confirmed new built-up (ha)" });
        note.textContent = "No built-up baseline for this city: the line is the cumulative confirmed area. ";
      } else {
        emptyChart($("chart"), "chart-svg", o ? "No confirmed built-up change yet" : "No statistics for this city yet", "chart-empty");
      }
      if (months.length) barChart($("chart-new"), months.map((m) => ({ month: m.month, value: m.new_confirmed_m2 / 1e4, n: m.new_confirmed_sites })), { id: "chart-new-svg", unit: "ha" });
      else emptyChart($("chart-new"), "chart-new-svg", "Nothing confirmed yet", "chart-new-empty");
      if (o && o.start) {
        const bs = o.baseline_sites;
        note.textContent += `From the city's first scene (${o.start}); the baseline period ends ${o.baseline_end}.`
          + (bs && bs.sites ? ` ${plural(bs.sites, "confirmed site", "confirmed sites")} (${fmtHa(bs.area_m2)}) with a change date inside the baseline period are not added: the baseline already holds them.` : "");
      }
      this.renderSdg(o ? o.sdg_11_3_1 : null);
    }

    renderSdg(sdg) {
      const box = $("sdg");
      box.replaceChildren();
      const inputs = (sdg && sdg.inputs) || null;
      if (!sdg || !sdg.available) {
        box.append(el("p", { class: "muted", id: "sdg-unavailable" }, "SDG 11.3.1: not available — "
          + ((sdg && sdg.reason) || "it needs a built-up baseline and population figures.")));
        if (inputs) box.append(sdgInputs(inputs));
        return;
      }
      const ratio = sdg.ratio === null || sdg.ratio === undefined ? "—" : Number(sdg.ratio).toFixed(2);
      box.append(el("p", { class: "sdg-result", id: "sdg-result" }, el("strong", {}, `LCR/PGR = ${ratio}`),
        ` from ${sdg.t1} to ${sdg.t2} (${Number(sdg.years).toFixed(1)} years): ${sdg.note}.`));
      const table = el("table", { id: "sdg-table" });
      table.append(el("tr", {}, ...["", "t1", "t2", "rate"].map((h) => el("th", {}, h))));
      table.append(el("tr", {}, el("td", {}, "Built-up area (Urb)"), el("td", {}, fmtKm2(sdg.urb_t1_m2)), el("td", {}, fmtKm2(sdg.urb_t2_m2)), el("td", {}, `LCR ${fmtRate(sdg.lcr)}`)));
      table.append(el("tr", {}, el("td", {}, "Population (Pop)"), el("td", {}, fmtInt(sdg.pop_t1)), el("td", {}, fmtInt(sdg.pop_t2)), el("td", {}, `PGR ${fmtRate(sdg.pgr)}`)));
      table.append(el("tr", {}, el("td", {}, "LCR/PGR"), el("td", { colspan: "3" }, ratio)));
      box.append(table);
      if (inputs) box.append(sdgInputs(inputs));
    }

    // -------------------------------------------------------------- chrome
    renderStaticHeader() {
      const data = this.source.data;
      if (data.title) { $("title").textContent = data.title; document.title = data.title; }
      if (data.generated_at) $("generated").textContent = `generated ${data.generated_at}`;
      $("footer-note").textContent = "static report (no server needed)";
      const summary = data.summary || {};
      const keys = Object.keys(summary);
      if (keys.length) {
        const table = $("summary-table");
        for (const k of keys) table.append(el("tr", {}, el("th", {}, k), el("td", {}, formatValue(summary[k]))));
        $("summary-section").hidden = false;
      }
    }

    setLiveState(state) {
      const pill = $("live-status");
      const map = {
        live: ["pill pill-live", "live"], reconnecting: ["pill pill-warn", "reconnecting…"],
        closed: ["pill pill-warn", "live updates off"], unsupported: ["pill pill-warn", "no live updates"],
        static: ["pill pill-static", "static report"],
      };
      const [cls, text] = map[state] || ["pill pill-idle", state];
      pill.className = cls;
      pill.textContent = text;
      document.body.dataset.live = state;
      if (this.source.mode === "live") $("footer-note").textContent = state === "live" ? "live updates on" : "live updates: " + text;
    }

    showBanner(text, kind) { const b = $("banner"); b.textContent = text; b.className = `banner ${kind || ""}`; b.hidden = false; }
    hideBanner() { $("banner").hidden = true; }
    flash(text) {
      const toast = $("toast");
      toast.textContent = text;
      toast.hidden = false;
      clearTimeout(this.flashTimer);
      this.flashTimer = setTimeout(() => { toast.hidden = true; }, 5000);
    }
    showEmpty(title, text) {
      const box = $("map-empty");
      box.replaceChildren(el("strong", {}, title), text);
      box.hidden = false;
    }
    hideEmpty() { $("map-empty").hidden = true; }
  }

  // ------------------------------------------------------------------ charts and formatting
  function sdgInputs(inputs) {
    const rows = [
      ["t1", `${inputs.t1} — ${inputs.t1_rule}`],
      ["t2", `${inputs.t2} — ${inputs.t2_rule}`],
      ["Urb t1", inputs.urb_t1_m2 === null ? "unknown" : `${fmtKm2(inputs.urb_t1_m2)} (${inputs.urb_t1_source})`],
      ["Added t1→t2", `${fmtHa(inputs.added_m2 || 0)} in ${plural(inputs.added_sites || 0, "confirmed site", "confirmed sites")} (by change date)`],
      ["Urb t2", inputs.urb_t2_m2 === null ? "unknown" : fmtKm2(inputs.urb_t2_m2)],
      ["Population figures", Object.entries(inputs.population || {}).map(([y, p]) => `${y}: ${fmtInt(p)}`).join(", ") || "none"],
    ];
    if (inputs.pop_t1 !== undefined) rows.push(["Population t1 → t2", `${fmtInt(inputs.pop_t1)} → ${fmtInt(inputs.pop_t2)}${inputs.population_extrapolated ? " (extrapolated)" : " (interpolated)"}`]);
    const table = el("table", { class: "kv", id: "sdg-inputs" });
    table.append(el("caption", {}, "Inputs"));
    for (const [k, v] of rows) table.append(el("tr", {}, el("th", {}, k), el("td", {}, v)));
    return table;
  }

  const monthDay = (month) => toDay(`${month}-01`);

  function chartFrame(box, id, height) {
    box.replaceChildren();
    const width = Math.max(box.clientWidth || 640, 320);
    const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", id, style: `height:${height}px` });
    box.append(root);
    return { root, width, height };
  }

  function emptyChart(box, id, message, textId) {
    const { root, width, height } = chartFrame(box, id, 120);
    const t = svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty", id: textId });
    t.textContent = message;
    root.append(t);
  }

  function monthAxis(root, months, sx, y, width) {
    const axis = svg("g", { class: "axis" });
    const every = [1, 2, 3, 6, 12, 24].find((k) => months.length / k <= Math.max(2, Math.floor(width / 90))) || 36;
    months.forEach((m, i) => {
      if (i % every !== 0) return;
      axis.append(svg("line", { x1: sx(i), x2: sx(i), y1: y, y2: y + 4 }));
      const t = svg("text", { x: sx(i), y: y + 16, "text-anchor": "middle" });
      t.textContent = m;
      axis.append(t);
    });
    root.append(axis);
  }

  function valueAxis(root, lo, hi, sy, m, width, label, format) {
    const grid = svg("g", { class: "grid" }), axis = svg("g", { class: "axis" });
    for (const v of niceTicks(lo, hi, 4)) {
      grid.append(svg("line", { x1: m.l, x2: width - m.r, y1: sy(v), y2: sy(v) }));
      const t = svg("text", { x: m.l - 6, y: sy(v) + 4, "text-anchor": "end" });
      t.textContent = format(v);
      axis.append(t);
    }
    const yMid = (sy(lo) + sy(hi)) / 2;
    const title = svg("text", { x: 12, y: yMid, transform: `rotate(-90 12 ${yMid})`, "text-anchor": "middle" });
    title.textContent = label;
    axis.append(title);
    root.append(grid, axis);
  }

  const fmtAxis = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2));

  /** A monthly line (built-up area at each month's end). */
  function lineChart(box, points, opts) {
    const { root, width, height } = chartFrame(box, opts.id, 220);
    const m = { l: 64, r: 18, t: 12, b: 30 };
    const ys = points.map((p) => p.value);
    let y0 = Math.min(...ys), y1 = Math.max(...ys);
    const pad = (y1 - y0) * 0.15 || Math.abs(y1) * 0.02 || 1;
    y0 = Math.max(0, y0 - pad); y1 += pad;
    const n = points.length;
    const sx = (i) => m.l + (n > 1 ? (i / (n - 1)) : 0.5) * (width - m.l - m.r);
    const sy = (v) => height - m.b - ((v - y0) / (y1 - y0)) * (height - m.t - m.b);
    valueAxis(root, y0, y1, sy, m, width, opts.label, fmtAxis);
    monthAxis(root, points.map((p) => p.month), sx, height - m.b, width);
    root.append(svg("line", { x1: m.l, x2: width - m.r, y1: height - m.b, y2: height - m.b, class: "baseline-axis" }));
    const d = points.map((p, i) => `${i ? "L" : "M"}${sx(i)},${sy(p.value)}`).join("");
    root.append(svg("path", { class: "area", d: `${d}V${sy(y0)}H${sx(0)}Z` }));
    root.append(svg("path", { class: "line", d, id: opts.lineId }));
    points.forEach((p, i) => {
      const c = svg("circle", { class: "dot", cx: sx(i), cy: sy(p.value), r: n > 40 ? 2 : 3 });
      const title = svg("title");
      title.textContent = `${p.month}: ${fmtAxis(p.value)} ${opts.unit}`;
      c.append(title);
      root.append(c);
    });
  }

  /** Monthly bars (area newly confirmed each month). */
  function barChart(box, points, opts) {
    const { root, width, height } = chartFrame(box, opts.id, 150);
    const m = { l: 64, r: 18, t: 10, b: 30 };
    const y1 = Math.max(...points.map((p) => p.value), 0) * 1.1 || 1;
    const n = points.length;
    const step = (width - m.l - m.r) / Math.max(n, 1);
    const sx = (i) => m.l + (i + 0.5) * step;
    const sy = (v) => height - m.b - (v / y1) * (height - m.t - m.b);
    valueAxis(root, 0, y1, sy, m, width, `New confirmed (${opts.unit})`, fmtAxis);
    monthAxis(root, points.map((p) => p.month), sx, height - m.b, width);
    points.forEach((p, i) => {
      if (!p.value) return;
      const r = svg("rect", { class: "bar", x: sx(i) - step * 0.4, width: Math.max(step * 0.8, 1), y: sy(p.value), height: Math.max(height - m.b - sy(p.value), 0.5) });
      const title = svg("title");
      title.textContent = `${p.month}: ${fmtAxis(p.value)} ${opts.unit} in ${plural(p.n, "site", "sites")}`;
      r.append(title);
      root.append(r);
    });
  }

  function niceTicks(lo, hi, n) {
    const span = hi - lo || 1;
    const step0 = span / n;
    const mag = Math.pow(10, Math.floor(Math.log10(step0)));
    const step = [1, 2, 2.5, 5, 10].map((k) => k * mag).find((s) => span / s <= n) || 10 * mag;
    const ticks = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) ticks.push(Number(v.toFixed(10)));
    return ticks;
  }

  function formatValue(v) {
    if (v === null || v === undefined) return "—";
    if (typeof v === "number") return Number.isInteger(v) ? fmtInt(v) : v.toFixed(Math.abs(v) < 10 ? 3 : 1);
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  // ------------------------------------------------------------------ boot
  function boot() {
    const data = window.URBAN_MONITOR_DATA;
    const source = data ? new StaticSource(data) : new ApiSource();
    const app = new Dashboard(source);
    window.urbanMonitor = app; // for debugging and the browser tests
    app.start().catch((err) => {
      console.error(err);
      app.showBanner(`The dashboard failed to start: ${err.message}`);
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
