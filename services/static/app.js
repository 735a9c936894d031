/* Urban Monitor dashboard — plain JS over Leaflet, no build step.
 *
 * Two modes, one renderer:
 *  - live: served by the API under /dashboard/; reads the OGC API - Features collections,
 *    the per-city map layers and stats, and follows /alerts/stream (Server-Sent Events);
 *  - static: the demo's self-contained HTML report sets window.URBAN_MONITOR_DATA
 *    (see monitor/reporting/report.py) and everything renders without a server.
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
  // Time of change: viridis, older = purple, newer = yellow (as CHANGE_RAMP in Python).
  const CHANGE_RAMP = [[0.0, "#440154"], [0.25, "#3b528b"], [0.5, "#21918c"], [0.75, "#5ec962"], [1.0, "#fde725"]];
  const DAY_MS = 86400000;
  const RETRY_MS = 5000;

  // ------------------------------------------------------------------ small helpers
  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
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
  const fmtPct = (x) => `${Math.round(x * 100)} %`;
  const hexToRgb = (h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16));

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
      // Follow the OGC 'next' links until every alert of the city is here.
      let path = `/collections/alerts/items?city=${encodeURIComponent(cityId)}&limit=1000`;
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
    async stats(cityId) {
      try {
        return await this.json(`/cities/${encodeURIComponent(cityId)}/stats`);
      } catch (err) {
        if (err.status === 404) return null;
        throw err;
      }
    }
    subscribe(onAlert, onState) {
      if (!window.EventSource) { onState("unsupported"); return; }
      const source = new EventSource(this.url("/alerts/stream"));
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
    async stats(cityId) { return this.city(cityId).stats || null; }
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
    if (retracted !== null && retracted <= day) return "retracted";
    if (confirmed !== null && confirmed <= day) return "confirmed";
    if (p.status === "first" || p.status === "provisional") return p.status;
    return "provisional"; // confirmed or retracted later: it was detected, not yet confirmed
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
      this.stats = null;
      this.overlays = {};
      this.loadToken = 0;
    }

    async start() {
      document.body.classList.add(this.source.mode === "static" ? "static-mode" : "live-mode");
      this.initMap();
      $("colour-by").addEventListener("change", (e) => { this.colourBy = e.target.value; this.renderAlerts(); this.renderLegends(); });
      $("time-slider").addEventListener("input", () => this.onSlider());
      $("city-select").addEventListener("change", (e) => this.selectCity(e.target.value));
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
      if (old) { this.map.removeLayer(old); this.layerControl.removeLayer(old); delete this.overlays[name]; }
      if (!url || !bounds) return;
      const visible = old ? this.map.hasLayer(old) : options.show !== false; // keep the user's choice
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
        document.body.dataset.state = "ready";
        return;
      }
      for (const c of this.cities) select.append(el("option", { value: c.id }, c.name));
      const wanted = new URLSearchParams(location.search).get("city") || location.hash.replace(/^#/, "");
      const first = this.cities.find((c) => c.id === wanted) || this.cities[0];
      select.value = first.id;
      await this.selectCity(first.id);
    }

    async selectCity(cityId) {
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
      let features, layers, stats;
      try {
        [features, layers, stats] = await Promise.all([
          this.source.alerts(city.id), this.source.layers(city), this.source.stats(city.id),
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
      this.setOverlay("RGB composite (latest clear)", layers.rgb, layers.bounds, { opacity: 1, show: true, className: "layer-rgb" });
      this.setOverlay("Time of change", layers.change, layers.bounds, { opacity: 0.85, show: true, className: "layer-change" });
      const bounds = layers.bounds ? toLatLngBounds(layers.bounds) : null;
      this.stats = stats;
      this.computeRanges(true);
      this.renderAlerts();
      this.renderLegends();
      this.renderChart();
      if (bounds) this.map.fitBounds(bounds, { padding: [10, 10] });
      else if (this.alerts.size) this.map.fitBounds(this.alertLayer.getBounds(), { padding: [30, 30], maxZoom: 15 });
      else if (city.geometry) this.map.fitBounds(toLatLngBounds(boundsOfGeometry(city.geometry)));
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
      this.flash(`Alert ${data.status}: ${fmtArea(data.area_m2)} (revision ${data.revision})`);
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
          this.setOverlay("Time of change", layers.change, layers.bounds, { opacity: 0.85, className: "layer-change" });
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

    renderAlerts() {
      this.alertLayer.clearLayers();
      const latest = this.isSliderAtEnd();
      const day = this.dayRange ? Number($("time-slider").value) : Infinity;
      const counts = { first: 0, provisional: 0, confirmed: 0, retracted: 0, withdrawn: 0 };
      let shown = 0;
      const ordered = [...this.alerts.values()].sort((a, b) => STATUSES.indexOf(b.properties.status) - STATUSES.indexOf(a.properties.status));
      for (const f of ordered) {
        const p = f.properties;
        const first = toDay(p.first_detected);
        if (first !== null && first > day) continue;
        const status = statusAsOf(p, day, latest);
        counts[status] = (counts[status] || 0) + 1;
        shown += 1;
        const colour = this.colourOf(p, status);
        const id = alertIdOf(f);
        const selected = id === this.selectedId;
        const retracted = status === "retracted";
        const style = {
          color: retracted ? "#bdbdbd" : "#ffffff", weight: selected ? 4 : 1.5, opacity: 0.95,
          fillColor: colour, fillOpacity: retracted ? 0.25 : 0.6, dashArray: retracted ? "4 4" : null,
          className: `alert-shape alert-${status}${selected ? " alert-selected" : ""}`,
        };
        // Path options (className included) must be given at creation, not via style().
        const shape = L.geoJSON(f.geometry, Object.assign({}, style, { style: () => style }));
        shape.on("click", (e) => { L.DomEvent.stopPropagation(e); this.select(id); });
        shape.bindTooltip(`${STATUS_LABELS[status]} · ${fmtArea(p.area_m2)} · ${p.first_detected}`, { sticky: true });
        shape.addTo(this.alertLayer);
        shape.eachLayer((layer) => { const path = layer.getElement && layer.getElement(); if (path) path.setAttribute("data-alert-id", id); });
        // Small sites vanish at city zoom: a marker keeps every alert visible and clickable
        // until its outline is big enough on screen to see and click.
        const sb = shape.getBounds();
        const centre = sb.getCenter();
        const nw = this.map.latLngToLayerPoint(sb.getNorthWest()), se = this.map.latLngToLayerPoint(sb.getSouthEast());
        if (Math.min(Math.abs(se.x - nw.x), Math.abs(se.y - nw.y)) >= 28) continue;
        const marker = L.circleMarker(centre, {
          radius: selected ? 8 : 6, color: selected ? "#1f6feb" : "#ffffff", weight: selected ? 3 : 1.5,
          fillColor: colour, fillOpacity: retracted ? 0.4 : 0.95,
          className: `alert-marker alert-marker-${status}`,
        });
        marker.on("click", (e) => { L.DomEvent.stopPropagation(e); this.select(id); });
        marker.bindTooltip(`${STATUS_LABELS[status]} · ${fmtArea(p.area_m2)} · ${p.first_detected}`);
        marker.addTo(this.alertLayer);
        marker.getElement().setAttribute("data-alert-id", id);
      }
      this.renderCounts(counts, shown);
      if (!this.alerts.size) {
        this.showEmpty("No alerts yet", this.source.mode === "static"
          ? "This run found no urban change in this city."
          : "New urban change appears here as soon as it is detected — no reload needed.");
      } else if (!shown) {
        this.showEmpty("No alerts up to this date", "Move the time slider to a later date.");
      } else {
        this.hideEmpty();
      }
      document.body.dataset.alerts = String(shown);
    }

    renderCounts(counts, shown) {
      const box = $("counts");
      box.replaceChildren();
      for (const s of STATUSES) {
        box.append(el("div", { class: `count count-${s}`, "data-status": s },
          el("span", { class: "swatch", style: `background:${STATUS_COLOURS[s]}` }),
          el("span", { class: "label" }, STATUS_LABELS[s]),
          el("span", { class: "n" }, String(counts[s] || 0))));
      }
      const total = this.alerts.size;
      box.append(el("div", { class: "count total", id: "count-total" },
        total ? `${shown} of ${total} alert${total === 1 ? "" : "s"} shown` : "no alerts yet"));
    }

    select(id) {
      this.selectedId = id;
      this.renderAlerts();
      this.renderDetails(this.alerts.get(id));
    }

    renderDetails(feature) {
      const box = $("details");
      box.replaceChildren();
      if (!feature) {
        box.append(el("p", { class: "muted" }, this.alerts && this.alerts.size ? "Click an alert on the map." : "No alert selected."));
        return;
      }
      const p = feature.properties;
      const rows = [
        ["Status", el("span", { class: "status-badge", style: `background:${STATUS_COLOURS[p.status] || "#888"}` }, STATUS_LABELS[p.status] || p.status)],
        ["Area", `${fmtArea(p.area_m2)} (${fmtInt(p.area_m2)} m²)`],
        ["Confidence", fmtPct(p.confidence)],
        ["Change date", p.change_date || "—"],
        ["First detected", p.first_detected || "—"],
        ["Confirmed", p.confirmed || "—"],
        ["Retracted", p.retracted || "—"],
        ["Revision", String(p.revision ?? "—")],
        ["Model version", p.model_version || "—"],
        ["Alert id", el("span", { class: "alert-id" }, alertIdOf(feature))],
      ];
      const table = el("table", { id: "details-table" });
      for (const [k, v] of rows) table.append(el("tr", {}, el("th", {}, k), el("td", {}, v)));
      const scenes = Array.isArray(p.scene_ids) ? p.scene_ids : String(p.scene_ids || "").split(",").filter(Boolean);
      table.append(el("tr", {}, el("th", {}, `Scenes (${scenes.length})`),
        el("td", {}, scenes.length ? el("div", { class: "scenes" }, ...scenes.flatMap((s, i) => (i ? [el("br"), s] : [s]))) : "—")));
      box.append(table);
    }

    // -------------------------------------------------------------- legends
    renderLegends() {
      const statusBox = $("status-legend");
      statusBox.replaceChildren();
      if (this.colourBy === "status") {
        for (const s of STATUSES) {
          statusBox.append(el("div", { class: "row" },
            el("span", { class: `swatch${s === "retracted" ? " dashed" : ""}`, style: `background:${STATUS_COLOURS[s]}` }), STATUS_LABELS[s]));
        }
      } else {
        statusBox.append(el("div", { class: "row muted" }, "Alerts coloured by their date of change (scale below); retracted ones dashed."));
      }
      const box = $("change-legend");
      box.replaceChildren();
      const range = this.changeRange;
      const hasLayer = Boolean(this.layers && this.layers.change);
      if (!range && !hasLayer) return;
      box.append(el("div", { class: "legend-title" }, hasLayer ? "Time of change (map layer)" : "Date of change"));
      const gradient = CHANGE_RAMP.map(([p, c]) => `${c} ${p * 100}%`).join(", ");
      box.append(el("div", { class: "ramp", style: `background: linear-gradient(to right, ${gradient})` }));
      const ticks = el("div", { class: "ramp-ticks" });
      const legendTicks = this.changeLegend && this.changeLegend.ticks;
      const list = legendTicks && legendTicks.length ? legendTicks.filter((_, i, a) => a.length <= 3 || i % 2 === 0 || i === a.length - 1)
        : range ? [{ position: 0, label: fromDay(range[0]) }, { position: 1, label: fromDay(range[1]) }] : [];
      for (const t of list) ticks.append(el("span", { style: `left:${t.position * 100}%` }, t.label));
      box.append(ticks);
    }

    // -------------------------------------------------------------- chart
    renderChart() {
      const { series, valueLabel, sdg } = normaliseStats(this.stats);
      const box = $("chart");
      box.replaceChildren();
      const width = Math.max(box.clientWidth || 640, 320), height = 240;
      const m = { l: 64, r: 18, t: 14, b: 30 };
      const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "Built-up area over time", id: "chart-svg" });
      box.append(root);
      // A lone baseline point is no trend: say so rather than draw a flat dot.
      if (series.length < 2) {
        const t = svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty", id: "chart-empty" });
        t.textContent = this.stats ? "No confirmed built-up change yet" : "No statistics for this city yet";
        root.append(t);
        this.renderSdg(sdg);
        return;
      }
      const xs = series.map((d) => d.day), ys = series.map((d) => d.value);
      let x0 = Math.min(...xs), x1 = Math.max(...xs);
      if (x1 === x0) { x0 -= 15; x1 += 15; }
      let y0 = Math.min(...ys), y1 = Math.max(...ys);
      const pad = (y1 - y0) * 0.1 || Math.abs(y1) * 0.05 || 1;
      y0 = Math.max(0, y0 - pad); y1 += pad;
      const sx = (d) => m.l + ((d - x0) / (x1 - x0)) * (width - m.l - m.r);
      const sy = (v) => height - m.b - ((v - y0) / (y1 - y0)) * (height - m.t - m.b);
      const grid = svg("g", { class: "grid" }), axis = svg("g", { class: "axis" });
      const unit = valueLabel.unit;
      for (const v of niceTicks(y0, y1, 5)) {
        grid.append(svg("line", { x1: m.l, x2: width - m.r, y1: sy(v), y2: sy(v) }));
        const t = svg("text", { x: m.l - 6, y: sy(v) + 4, "text-anchor": "end" });
        t.textContent = unit.format(v);
        axis.append(t);
      }
      for (const d of dateTicks(x0, x1, Math.max(2, Math.floor((width - m.l - m.r) / 110)))) {
        axis.append(svg("line", { x1: sx(d), x2: sx(d), y1: height - m.b, y2: height - m.b + 4 }));
        const t = svg("text", { x: sx(d), y: height - m.b + 16, "text-anchor": "middle" });
        t.textContent = fromDay(d).slice(0, 7);
        axis.append(t);
      }
      const yTitle = svg("text", { x: 12, y: m.t + (height - m.t - m.b) / 2, transform: `rotate(-90 12 ${m.t + (height - m.t - m.b) / 2})`, "text-anchor": "middle" });
      yTitle.textContent = `${valueLabel.name} (${unit.name})`;
      axis.append(yTitle);
      axis.append(svg("line", { x1: m.l, x2: width - m.r, y1: height - m.b, y2: height - m.b }));
      root.append(grid, axis);
      // A step line: the built-up area holds its value until the next change date.
      let d = `M${sx(xs[0])},${sy(ys[0])}`;
      for (let i = 1; i < series.length; i++) d += `H${sx(xs[i])}V${sy(ys[i])}`;
      d += `H${sx(x1)}`;
      root.append(svg("path", { class: "area", d: `${d}V${sy(y0)}H${sx(xs[0])}Z` }));
      root.append(svg("path", { class: "line", d, id: "chart-line" }));
      for (const p of series) {
        const c = svg("circle", { class: "dot", cx: sx(p.day), cy: sy(p.value), r: 3.5 });
        const title = svg("title");
        title.textContent = `${fromDay(p.day)}: ${unit.format(p.value)} ${unit.name}`;
        c.append(title);
        root.append(c);
      }
      this.renderSdg(sdg);
    }

    renderSdg(sdg) {
      const box = $("sdg");
      box.replaceChildren();
      const available = sdg.filter((s) => s.available !== false && s.lcr !== undefined);
      if (!available.length) {
        const reason = sdg.map((s) => s.reason).find(Boolean);
        box.append(el("p", { class: "muted", id: "sdg-unavailable" }, "SDG 11.3.1 (land consumption rate / population growth rate): not available — "
          + (reason || "it needs a built-up baseline and population figures.")));
        return;
      }
      sdg = available;
      const table = el("table", { id: "sdg-table" });
      table.append(el("caption", {}, "SDG 11.3.1 — ratio of land consumption rate to population growth rate"));
      table.append(el("tr", {}, ...["Period", "Years", "LCR", "PGR", "LCR/PGR", ""].map((h) => el("th", {}, h))));
      for (const s of sdg) {
        table.append(el("tr", {},
          el("td", {}, `${s.t1} → ${s.t2}`),
          el("td", {}, s.years !== undefined ? Number(s.years).toFixed(1) : "—"),
          el("td", {}, fmtRate(s.lcr)), el("td", {}, fmtRate(s.pgr)),
          el("td", {}, s.ratio === null || s.ratio === undefined ? "—" : Number(s.ratio).toFixed(2)),
          el("td", { class: "muted", style: "text-align:left" }, s.note || (s.population_extrapolated ? "population extrapolated" : ""))));
      }
      box.append(table);
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

  // ------------------------------------------------------------------ stats and formatting
  /** Accepts the stats shapes of the API and the report: a list of {date, built_up_m2 |
   *  cumulative_added_m2 | built_up_km2} under any key, and SDG 11.3.1 object(s) with lcr/pgr. */
  function normaliseStats(stats) {
    const out = { series: [], valueLabel: { name: "Built-up area", unit: UNITS.km2 }, sdg: [] };
    if (!stats || typeof stats !== "object") return out;
    const arrays = [];
    const sdg = [];
    const walk = (v, depth) => {
      if (depth > 3 || v === null || typeof v !== "object") return;
      if (Array.isArray(v)) {
        if (v.length && v.every((x) => x && typeof x === "object" && (x.date || x.day))) arrays.push(v);
        else if (v.length && v.every((x) => x && typeof x === "object" && "lcr" in x)) sdg.push(...v);
        return;
      }
      if (("lcr" in v && "pgr" in v) || ("available" in v && "reason" in v)) { sdg.push(v); return; }
      for (const x of Object.values(v)) walk(x, depth + 1);
    };
    walk(stats, 0);
    out.sdg = sdg;
    const series = arrays.sort((a, b) => b.length - a.length)[0] || [];
    const hasBuilt = series.some((x) => typeof x.built_up_m2 === "number" || typeof x.built_up_km2 === "number");
    if (!hasBuilt) out.valueLabel = { name: "New built-up area", unit: UNITS.ha };
    out.series = series.map((x) => {
      let m2 = null;
      if (hasBuilt) m2 = typeof x.built_up_km2 === "number" ? x.built_up_km2 * 1e6 : x.built_up_m2;
      else m2 = x.cumulative_added_m2 ?? x.added_m2 ?? x.area_m2 ?? null;
      return { day: toDay(x.date || x.day), value: m2 === null || m2 === undefined ? null : out.valueLabel.unit.from(m2) };
    }).filter((p) => p.day !== null && p.value !== null && Number.isFinite(p.value)).sort((a, b) => a.day - b.day);
    return out;
  }
  const UNITS = {
    km2: { name: "km²", from: (m2) => m2 / 1e6, format: (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2)) },
    ha: { name: "ha", from: (m2) => m2 / 1e4, format: (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(1)) },
  };
  const fmtRate = (x) => (x === null || x === undefined ? "—" : `${(Number(x) * 100).toFixed(2)} %/yr`);

  function niceTicks(lo, hi, n) {
    const span = hi - lo || 1;
    const step0 = span / n;
    const mag = Math.pow(10, Math.floor(Math.log10(step0)));
    const step = [1, 2, 2.5, 5, 10].map((k) => k * mag).find((s) => span / s <= n) || 10 * mag;
    const ticks = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) ticks.push(Number(v.toFixed(10)));
    return ticks;
  }

  function dateTicks(d0, d1, n) {
    // Month starts, thinned to about n ticks.
    const start = new Date(d0 * DAY_MS), ticks = [];
    let y = start.getUTCFullYear(), mo = start.getUTCMonth() + 1;
    const months = [];
    for (let guard = 0; guard < 1200; guard++) {
      if (mo > 11) { mo = 0; y += 1; }
      const d = Date.UTC(y, mo, 1) / DAY_MS;
      if (d > d1) break;
      months.push(d);
      mo += 1;
    }
    const every = [1, 2, 3, 6, 12, 24, 60].find((k) => months.length / k <= n) || 120;
    for (let i = 0; i < months.length; i++) {
      const m = new Date(months[i] * DAY_MS).getUTCMonth();
      if (m % Math.min(every, 12) === 0 && (every <= 12 || new Date(months[i] * DAY_MS).getUTCFullYear() % (every / 12) === 0)) ticks.push(months[i]);
    }
    return ticks.length ? ticks : [d0, d1];
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
