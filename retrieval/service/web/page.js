// The unibind web page: one text or image query is recognised (top-k categories as bars) and searched
// (a grid of hits: thumbnails for image items, text for descriptions, metadata on hover); the centre
// inspector lists a category's centre members with their scores; the space view shows the PNG of a category's
// centre in 2-D among its nearest centres. Every call goes through api(), which
// adds the API key kept in this browser (localStorage) and turns 4xx bodies into messages.
"use strict";

const KEY_STORE = "unibind.apiKey";
const $ = (id) => document.getElementById(id);
const state = { info: null, image: null, thumbUrls: [], spaceUrl: null };

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k in node) node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function headers() {
  const key = localStorage.getItem(KEY_STORE);
  return key ? { "X-API-Key": key } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  if (response.status === 401) askForKey();
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && body.detail !== undefined) {
        message = typeof body.detail === "string" ? body.detail : body.detail.map(
          (d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
      }
    } catch (_) { /* not JSON */ }
    throw new ApiError(response.status, message);
  }
  return response;
}

const getJson = async (path) => (await api(path)).json();

function showError(id, error) {
  const box = $(id);
  if (error) { box.textContent = error.message || String(error); box.hidden = false; }
  else { box.textContent = ""; box.hidden = true; }
}

function score(x) { return x.toFixed(3); }

// -- the API key ---------------------------------------------------------------------------------------
function askForKey() {
  $("key-box").classList.add("needed");
  $("auth-note").textContent = localStorage.getItem(KEY_STORE)
    ? "the server refused this key" : "this server needs an API key";
}

$("key-box").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("api-key").value.trim();
  if (key) localStorage.setItem(KEY_STORE, key); else localStorage.removeItem(KEY_STORE);
  $("key-box").classList.remove("needed");
  $("auth-note").textContent = "";
  loadInfo();
});

// -- what the server holds -----------------------------------------------------------------------------
async function loadInfo() {
  try {
    const info = await getJson("/v1/info");
    state.info = info;
    if (!info.space) {
      $("space-line").textContent = "the knowledge base is empty: ingest a corpus first";
      return;
    }
    const galleries = info.modalities.filter((m) => m.items > 0);
    $("space-line").textContent = `space ${info.space} (${info.dim}-d) · ${info.corpora} corpora · ` +
      `${info.categories} categories` + galleries.map((m) => ` · ${m.items} ${m.name} items`).join("");
    const target = $("q-target"), chosen = target.value;
    target.replaceChildren(el("option", { value: "descriptions", textContent: "descriptions" }),
      ...galleries.map((m) => el("option", { value: m.name, textContent: `${m.name} gallery` })));
    if ([...target.options].some((o) => o.value === chosen)) target.value = chosen;
    $("q-k").max = info.limits.max_k;
    const images = $("q-image");
    images.disabled = !info.image_queries;
    images.labels[0].classList.toggle("disabled", images.disabled);
    images.labels[0].title = images.disabled
      ? `space ${info.space} has no image tower and no image head: image queries are not possible` : "";
    const names = await getJson("/v1/categories");
    $("category-list").replaceChildren(...names.map((c) => el("option", { value: c.name })));
    document.body.dataset.ready = "1";  // what the page knows is loaded (the browser tests wait for it)
  } catch (error) {
    $("space-line").textContent = error.message;
  }
}

// -- the query -----------------------------------------------------------------------------------------
$("q-image").addEventListener("change", () => {
  const file = $("q-image").files[0];
  if (!file) return;
  state.image = file;
  const preview = $("q-preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  $("q-image-name").textContent = file.name;
  $("q-clear-image").hidden = false;
});

$("q-clear-image").addEventListener("click", () => {
  state.image = null;
  $("q-image").value = "";
  $("q-preview").hidden = true;
  $("q-image-name").textContent = "";
  $("q-clear-image").hidden = true;
});

function whereTerms(raw) {
  const out = {};
  for (const term of raw.split(/[,\n]/).map((t) => t.trim()).filter(Boolean)) {
    const at = term.indexOf("=");
    if (at < 1) throw new ApiError(0, `where: expected key=value, got ${JSON.stringify(term)}`);
    out[term.slice(0, at).trim()] = term.slice(at + 1).trim();
  }
  return out;
}

// One request body per route: JSON for a text query, multipart for an image.
function request(fields, extra) {
  if (state.image) {
    const form = new FormData();
    form.append("image", state.image, state.image.name);
    for (const [k, v] of Object.entries(fields)) {
      if (v === undefined || v === null || v === "") continue;
      if (k === "where") for (const [wk, wv] of Object.entries(v)) form.append("where", `${wk}=${wv}`);
      else form.append(k, String(v));
    }
    return { method: "POST", body: form };
  }
  const body = { texts: [extra.text] };
  for (const [k, v] of Object.entries(fields)) if (v !== undefined && v !== null && v !== "") body[k] = v;
  return { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) };
}

$("query-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("q-text").value.trim();
  if (!text && !state.image) {
    showError("recognition-error", new Error("type a description or choose an image first"));
    return;
  }
  const k = Number($("q-k").value || 5);
  let where;
  try { where = whereTerms($("q-where").value); } catch (error) { showError("results-error", error); return; }
  const label = $("q-label").value.trim();
  const target = $("q-target").value;
  $("q-go").disabled = true;
  $("recognition-query").textContent = state.image ? `· ${state.image.name}` : `· “${text}”`;
  $("results-target").textContent = `· ${target}`;
  document.body.dataset.busy = "1";
  try {
    await Promise.all([
      recognize(request({ k }, { text })),
      search(request({ k, target, label, where: Object.keys(where).length ? where : undefined }, { text })),
    ]);
  } finally {
    $("q-go").disabled = false;
    delete document.body.dataset.busy;
  }
});

async function recognize(init) {
  showError("recognition-error", null);
  $("bars").replaceChildren();
  try {
    const [answer] = await (await api("/v1/recognize", init)).json();
    const hi = Math.max(...answer.scores), lo = Math.min(0, ...answer.scores);
    $("bars").replaceChildren(...answer.labels.map((name, i) => {
      const s = answer.scores[i];
      const width = Math.max(2, (100 * (s - lo)) / ((hi - lo) || 1));
      const bar = el("li", { class: "bar", title: `${name}: ${score(s)} — click to inspect its centre`, tabIndex: 0 },
        el("span", { class: "bar-label", textContent: name }),
        el("span", { class: "bar-track" }, el("span", { class: "bar-fill", style: `width: ${width.toFixed(1)}%; display: block` })),
        el("span", { class: "bar-score", textContent: score(s) }));
      bar.dataset.category = name;
      bar.dataset.score = String(s);
      const open = () => { $("c-name").value = name; showCentre(name); showSpace(name); };
      bar.addEventListener("click", open);
      bar.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
      return bar;
    }));
  } catch (error) {
    showError("recognition-error", error);
  }
}

function metaList(hit) {
  const rows = [["id", hit.id]];
  if (hit.label !== null) rows.push(["label", hit.label]);
  if (hit.uri !== null) rows.push(["uri", hit.uri]);
  for (const [k, v] of Object.entries(hit.meta || {})) rows.push([k, typeof v === "string" ? v : JSON.stringify(v)]);
  return rows;
}

async function thumbnail(img, hit) {
  if (/^https?:\/\//.test(hit.uri || "")) { img.src = hit.uri; return; }
  try {
    const blob = await (await api(`/v1/items/${hit.id}/thumbnail?size=256`)).blob();
    const url = URL.createObjectURL(blob);
    state.thumbUrls.push(url);
    img.src = url;
  } catch (error) {
    img.alt = `no thumbnail: ${error.message}`;
    img.title = img.alt;
  }
}

function card(hit, target) {
  const rows = metaList(hit);
  const node = el("article", { class: "card", tabIndex: 0, title: rows.map(([k, v]) => `${k}: ${v}`).join("\n") });
  node.dataset.id = String(hit.id);
  const isImage = target !== "descriptions" && state.info &&
    state.info.modalities.some((m) => m.name === target && m.kind === "image");
  if (isImage) {
    const img = el("img", { class: "card-thumb", alt: hit.label || hit.uri || `item ${hit.id}`, loading: "lazy" });
    node.append(img);
    thumbnail(img, hit);
  } else if (hit.text !== null) {
    node.append(el("p", { class: "card-text", textContent: hit.text }));
  } else {
    node.append(el("p", { class: "card-text muted", textContent: hit.uri || `item ${hit.id}` }));
  }
  node.append(el("div", { class: "card-foot" },
    el("span", { class: "card-label", textContent: hit.label ?? "" }),
    el("span", { class: "card-score", textContent: score(hit.score) })));
  const dl = el("dl");
  for (const [k, v] of rows) dl.append(el("dt", { textContent: k }), el("dd", { textContent: String(v) }));
  node.append(el("div", { class: "card-meta" }, dl));
  return node;
}

async function search(init) {
  showError("results-error", null);
  for (const url of state.thumbUrls.splice(0)) URL.revokeObjectURL(url);
  $("grid").replaceChildren();
  const target = $("q-target").value;
  try {
    const [answer] = await (await api("/v1/search", init)).json();
    $("grid").replaceChildren(...(answer.hits.length
      ? answer.hits.map((h) => card(h, target))
      : [el("p", { class: "empty", textContent: "no hits (check the filters)" })]));
  } catch (error) {
    showError("results-error", error);
  }
}

// -- the centre inspector ------------------------------------------------------------------------------
async function showCentre(name) {
  showError("centre-error", null);
  const body = $("centre-members").tBodies[0];
  body.replaceChildren();
  $("centre-head").textContent = "";
  try {
    const centre = await getJson(`/v1/categories/${encodeURIComponent(name)}/centre`);
    $("centre-head").textContent = `${centre.category}: ${centre.members.length} members of ${centre.candidates} ` +
      `descriptions (${centre.strategy}, K=${centre.centre_size}, ranked against “${centre.template.replace("{}", centre.category)}”)`;
    const hi = Math.max(...centre.members.map((m) => m.score)), lo = Math.min(0, ...centre.members.map((m) => m.score));
    body.replaceChildren(...centre.members.map((m) => {
      const width = Math.max(2, (100 * (m.score - lo)) / ((hi - lo) || 1));
      const row = el("tr", { class: "member" },
        el("td", { class: "member-rank", textContent: String(m.rank) }),
        el("td", { class: "member-score" }, score(m.score), el("div", { class: "member-bar", style: `width: ${width.toFixed(1)}%` })),
        el("td", { class: "member-text", textContent: m.text }));
      row.dataset.score = String(m.score);
      return row;
    }));
  } catch (error) {
    showError("centre-error", error);
  }
}

$("centre-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("c-name").value.trim();
  if (name) showCentre(name); else showError("centre-error", new Error("type a category name"));
});

// -- the space view: a category's centre plot (a PNG the server draws) -----------------------------------
async function showSpace(name) {
  showError("space-error", null);
  const img = $("space-image");
  img.hidden = true;
  img.removeAttribute("src");
  if (state.spaceUrl) { URL.revokeObjectURL(state.spaceUrl); state.spaceUrl = null; }
  $("s-name").value = name;
  $("space-head").textContent = `drawing ${name}…`;
  const params = new URLSearchParams({ neighbours: $("s-neighbours").value || "5" });
  try {
    const blob = await (await api(`/v1/categories/${encodeURIComponent(name)}/centre/plot.png?${params}`)).blob();
    state.spaceUrl = URL.createObjectURL(blob);
    img.alt = `${name}: its centre, its other descriptions, its base prompt and the nearest centres in 2-D`;
    img.src = state.spaceUrl;
    img.hidden = false;
    $("space-head").textContent = name;
  } catch (error) {
    $("space-head").textContent = "";
    showError("space-error", error);
  }
}

$("space-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("s-name").value.trim();
  if (name) showSpace(name); else showError("space-error", new Error("type a category name"));
});

$("api-key").value = localStorage.getItem(KEY_STORE) || "";
loadInfo();
