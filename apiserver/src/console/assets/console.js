// gitplane web console: a plain ES module, no framework and no build step.
//
// Every data call is a Kubernetes API call on this origin with the bearer token the user typed,
// kept in sessionStorage only, so RBAC decides what each person sees and may do. Lists stay
// live through watches (`?watch=1` read as a stream). Data is put into the page as text nodes,
// never as HTML.

const TOKEN = 'gitplane.token';
const USER = 'gitplane.user';
const APPS = '/apis/gitplane.io/v1alpha1/applications';
const main = document.getElementById('main');
const notice = document.getElementById('notice');

// ---- DOM helpers -------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  el.append(...children.flat().filter((c) => c !== undefined && c !== null));
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, String(v));
  }
  el.append(...children.flat());
  return el;
}

function badge(text) {
  return h('span', { class: `badge ${text || 'Unknown'}` }, text || 'Unknown');
}

function showNotice(text, kind = 'error') {
  notice.textContent = text;
  notice.className = kind === 'error' ? '' : kind;
  notice.hidden = !text;
}

const short = (sha) => (sha || '').slice(0, 7);

function ago(time) {
  if (!time) return '';
  const secs = Math.max(0, Math.round((Date.now() - Date.parse(time)) / 1000));
  if (secs < 60) return `${secs}s ago`;
  if (secs < 3600) return `${Math.floor(secs / 60)}m ago`;
  if (secs < 86400) return `${Math.floor(secs / 3600)}h ago`;
  return `${Math.floor(secs / 86400)}d ago`;
}

// ---- API ---------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

const token = () => sessionStorage.getItem(TOKEN) || '';

function headers(extra = {}) {
  return { Authorization: `Bearer ${token()}`, Accept: 'application/json', ...extra };
}

async function failure(response) {
  const text = await response.text();
  let message = text || response.statusText;
  try {
    message = JSON.parse(text).message || message;
  } catch {
    // Not a Status: keep the text.
  }
  if (response.status === 401) signOut('The token was refused (401 Unauthorized): sign in again.');
  return new ApiError(response.status, message);
}

async function api(path, { method = 'GET', body, type = 'application/json', signal } = {}) {
  const init = { method, signal, headers: headers() };
  if (body !== undefined) {
    init.headers['Content-Type'] = type;
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (!response.ok) throw await failure(response);
  return response.json();
}

// Reads a streaming response line by line.
async function lines(response, onLine) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let i;
    while ((i = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, i);
      buffer = buffer.slice(i + 1);
      onLine(line);
    }
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// A live list: LIST, then WATCH from its resourceVersion; again from a fresh LIST when the
// watch ends (410 Gone, a restart). `onChange` gets every object, at most once per frame.
function live(path, signal, onChange, onError = () => {}) {
  const objects = new Map();
  let pending = false;
  const changed = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      if (!signal.aborted) onChange([...objects.values()]);
    });
  };
  const key = (o) => `${o.metadata.namespace || ''}/${o.metadata.name}`;
  (async () => {
    while (!signal.aborted) {
      try {
        const list = await api(path, { signal });
        objects.clear();
        for (const o of list.items || []) objects.set(key(o), o);
        changed();
        const sep = path.includes('?') ? '&' : '?';
        const rv = list.metadata.resourceVersion;
        const url = `${path}${sep}watch=1&allowWatchBookmarks=true&resourceVersion=${rv}`;
        const response = await fetch(url, { signal, headers: headers() });
        if (!response.ok) throw await failure(response);
        await lines(response, (line) => {
          if (!line.trim()) return;
          const event = JSON.parse(line);
          if (event.type === 'ERROR') throw new ApiError(event.object.code, event.object.message);
          if (event.type === 'BOOKMARK') return;
          if (event.type === 'DELETED') objects.delete(key(event.object));
          else objects.set(key(event.object), event.object);
          changed();
        });
      } catch (e) {
        if (signal.aborted) return;
        if (e instanceof ApiError && (e.code === 403 || e.code === 401)) return onError(e);
        await sleep(1000);
      }
    }
  })();
}

// Resource paths from discovery (kind → plural, namespaced), cached per group/version.
const discovered = new Map();
async function resourceOf(apiVersion, kind) {
  if (!discovered.has(apiVersion)) {
    const path = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
    discovered.set(apiVersion, api(path).then((l) => l.resources || []));
  }
  const resources = await discovered.get(apiVersion);
  const r = resources.find((x) => x.kind === kind && !x.name.includes('/'));
  if (!r) throw new ApiError(404, `${kind} is not served under ${apiVersion}`);
  const base = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
  return { base, plural: r.name, namespaced: r.namespaced };
}

async function objectPath(apiVersion, kind, namespace, name) {
  const r = await resourceOf(apiVersion, kind);
  const ns = r.namespaced ? `/namespaces/${encodeURIComponent(namespace || 'default')}` : '';
  return `${r.base}${ns}/${r.plural}/${encodeURIComponent(name)}`;
}

async function whoami() {
  const review = await api('/apis/authentication.k8s.io/v1/selfsubjectreviews', {
    method: 'POST',
    body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
  });
  return review.status?.userInfo?.username || 'unknown';
}

// ---- YAML and diffs ----------------------------------------------------------------------

function scalar(v) {
  if (v === null) return 'null';
  if (typeof v !== 'string') return String(v);
  if (v === '' || /^[\s\-?:,[\]{}#&*!|>'"%@`]|: |\s#|^(true|false|null|~|[-+]?[\d.]+)$|\n|\s$/i.test(v)) {
    return JSON.stringify(v);
  }
  return v;
}

function yaml(value, indent = '') {
  if (Array.isArray(value)) {
    if (!value.length) return '[]';
    return value
      .map((item) => {
        const body = yaml(item, `${indent}  `);
        return typeof item === 'object' && item !== null && Object.keys(item).length
          ? `${indent}- ${body.trimStart()}`
          : `${indent}- ${body}`;
      })
      .join('\n');
  }
  if (value && typeof value === 'object') {
    const keys = Object.keys(value);
    if (!keys.length) return '{}';
    return keys
      .map((k) => {
        const v = value[k];
        const composite = v && typeof v === 'object' && Object.keys(v).length;
        return composite
          ? `${indent}${scalar(k)}:\n${yaml(v, `${indent}  `)}`
          : `${indent}${scalar(k)}: ${yaml(v, `${indent}  `)}`;
      })
      .join('\n');
  }
  return scalar(value);
}

function withoutNoise(object) {
  const copy = structuredClone(object);
  if (copy.metadata) delete copy.metadata.managedFields;
  return copy;
}

// The live object seen through the shape of what was applied (the fields the repository sets).
function project(live, applied) {
  if (Array.isArray(applied)) return applied.map((a, i) => project(Array.isArray(live) ? live[i] : undefined, a));
  if (applied && typeof applied === 'object') {
    const out = {};
    for (const k of Object.keys(applied)) {
      const v = project(live && typeof live === 'object' ? live[k] : undefined, applied[k]);
      if (v !== undefined) out[k] = v;
    }
    return out;
  }
  return live;
}

// A line diff (longest common subsequence); fine for objects of a few hundred lines.
function diffLines(a, b) {
  const n = a.length;
  const m = b.length;
  const lcs = Array.from({ length: n + 1 }, () => new Array(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const out = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) out.push([' ', a[i++], j++]);
    else if (j < m && (i >= n || lcs[i][j + 1] >= lcs[i + 1][j])) out.push(['+', b[j++]]);
    else out.push(['-', a[i++]]);
  }
  return out.map(([op, line]) => [op, line]);
}

function diffView(before, after) {
  const pre = h('pre', { class: 'diff' });
  for (const [op, line] of diffLines(before.split('\n'), after.split('\n'))) {
    pre.append(h('span', { class: op === '+' ? 'add' : op === '-' ? 'del' : '' }, `${op} ${line}\n`));
  }
  return pre;
}

// ---- health of the objects under an Application's resources -------------------------------

function podHealth(pod) {
  const phase = pod.status?.phase;
  if (pod.metadata.deletionTimestamp) return 'Progressing';
  if (phase === 'Failed') return 'Degraded';
  if (phase === 'Succeeded') return 'Healthy';
  const waiting = (pod.status?.containerStatuses || []).find((c) => c.state?.waiting);
  if (waiting && /BackOff|Err/.test(waiting.state.waiting.reason || '')) return 'Degraded';
  const ready = (pod.status?.conditions || []).find((c) => c.type === 'Ready');
  return phase === 'Running' && ready?.status === 'True' ? 'Healthy' : 'Progressing';
}

function replicaSetHealth(rs) {
  const want = rs.spec?.replicas ?? 1;
  return (rs.status?.readyReplicas || 0) >= want ? 'Healthy' : 'Progressing';
}

// ---- pages -------------------------------------------------------------------------------

let page = null;

function route() {
  if (page) page.abort();
  page = new AbortController();
  showNotice('');
  const signedIn = Boolean(token());
  document.getElementById('signout').hidden = !signedIn;
  document.getElementById('nav').hidden = !signedIn;
  document.getElementById('whoami').textContent = signedIn ? `signed in as ${sessionStorage.getItem(USER) || ''}` : '';
  if (!signedIn) return signInPage();
  const [section, name] = (location.hash.replace(/^#\/?/, '') || 'apps').split('/').map(decodeURIComponent);
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.getAttribute('href') === `#/${section}`);
  if (section === 'apps' && name) return appPage(name, page.signal);
  if (section === 'cluster') return clusterPage(page.signal);
  if (section === 'review') return reviewPage(page.signal);
  return appsPage(page.signal);
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN);
  sessionStorage.removeItem(USER);
  route();
  if (message) showNotice(message);
}

function signInPage() {
  const area = h('textarea', { id: 'token', placeholder: 'eyJhbGciOi…', autocomplete: 'off', spellcheck: 'false' });
  const submit = async (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN, area.value.trim());
    try {
      sessionStorage.setItem(USER, await whoami());
      if (!location.hash.startsWith('#/')) location.hash = '#/apps';
      route();
    } catch (e) {
      sessionStorage.removeItem(TOKEN);
      showNotice(`Sign-in failed: ${e.message}`);
    }
  };
  main.replaceChildren(
    h('form', { class: 'signin panel', onsubmit: submit },
      h('h1', {}, 'Sign in to gitplane'),
      h('p', {}, 'Paste a bearer token. It stays in this browser tab (sessionStorage) and is sent with every API call; RBAC decides what you see and may do. `gitplane up` prints the command that makes one, for example:'),
      h('pre', {}, 'kubectl create token gitplane-console -n kube-system'),
      area,
      h('p', {}, h('button', { id: 'signin', type: 'submit' }, 'Sign in'))));
  area.focus();
}

function revisionInfo(app) {
  const revision = app.status?.sync?.revision || '';
  const history = app.status?.history || [];
  const entry = [...history].reverse().find((e) => e.revision === revision);
  return { revision, author: entry?.author || '', message: entry?.message || '', at: history.at(-1)?.deployedAt || '' };
}

function appsPage(signal) {
  const text = h('input', { id: 'filter', type: 'search', placeholder: 'Filter by name or namespace' });
  const option = (v) => h('option', { value: v }, v || 'any');
  const sync = h('select', { id: 'sync-filter' }, ['', 'Synced', 'OutOfSync', 'Unknown'].map(option));
  const health = h('select', { id: 'health-filter' }, ['', 'Healthy', 'Progressing', 'Degraded', 'Missing', 'Unknown'].map(option));
  const body = h('tbody');
  let apps = [];
  const render = () => {
    const q = text.value.trim().toLowerCase();
    const rows = apps
      .filter((a) => !q || a.metadata.name.includes(q) || (a.spec?.destination?.namespace || '').includes(q))
      .filter((a) => !sync.value || (a.status?.sync?.status || 'Unknown') === sync.value)
      .filter((a) => !health.value || (a.status?.health?.status || 'Unknown') === health.value)
      .sort((x, y) => x.metadata.name.localeCompare(y.metadata.name))
      .map((a) => {
        const info = revisionInfo(a);
        const open = () => { location.hash = `#/apps/${encodeURIComponent(a.metadata.name)}`; };
        return h('tr', { class: 'row', 'data-app': a.metadata.name, onclick: open },
          h('td', {}, h('a', { href: `#/apps/${encodeURIComponent(a.metadata.name)}` }, a.metadata.name)),
          h('td', { class: 'sync' }, badge(a.status?.sync?.status)),
          h('td', { class: 'health' }, badge(a.status?.health?.status)),
          h('td', { class: 'revision mono' }, short(info.revision)),
          h('td', { class: 'author' }, info.author),
          h('td', { class: 'message' }, info.message),
          h('td', { class: 'muted' }, ago(info.at)),
          h('td', { class: 'muted' }, a.spec?.destination?.namespace || ''));
      });
    body.replaceChildren(...(rows.length ? rows : [h('tr', {}, h('td', { colspan: 8, class: 'muted' }, apps.length ? 'No application matches the filters.' : 'No applications yet.'))]));
  };
  for (const el of [text, sync, health]) el.addEventListener('input', render);
  main.replaceChildren(
    h('h1', {}, 'Applications'),
    h('div', { class: 'filters' }, text, h('label', {}, 'Sync ', sync), h('label', {}, 'Health ', health)),
    h('table', { id: 'apps' },
      h('thead', {}, h('tr', {}, ['Name', 'Sync', 'Health', 'Revision', 'Author', 'Message', 'Last sync', 'Namespace'].map((c) => h('th', {}, c)))),
      body));
  live(APPS, signal, (items) => { apps = items; render(); }, (e) => showNotice(`Cannot list applications: ${e.message}`));
}

// Sends an operation to the syncer through the API (the CLI sends the same).
async function operate(name, operation) {
  const id = String(Date.now());
  const body = { operation: { id, initiatedBy: { username: sessionStorage.getItem(USER) || '' }, ...operation } };
  try {
    await api(`${APPS}/${encodeURIComponent(name)}`, { method: 'PATCH', type: 'application/merge-patch+json', body });
    const what = operation.sync ? 'Sync' : `Rollback to ${short(operation.rollback.revision)}`;
    showNotice(`${what} requested; the syncer carries it out.`, 'info');
  } catch (e) {
    const refusal = e.code === 403 ? 'Refused (403 Forbidden)' : `Failed (${e.code})`;
    showNotice(`${refusal}: ${e.message}`);
  }
}

function appPage(name, signal) {
  const state = { app: null, pods: new Map(), replicaSets: new Map(), selected: null, details: null };
  const title = h('h1', {}, name);
  const summary = h('div', { class: 'summary' });
  const tree = h('div', { class: 'tree', id: 'tree' });
  const details = h('div', { class: 'panel', id: 'details' }, h('p', { class: 'muted' }, 'Select an object in the tree to see its YAML, Events and logs.'));
  const operation = h('div', { id: 'operation' });
  const conditions = h('ul', { class: 'conditions', id: 'conditions' });
  const diffs = h('div', { id: 'diffs' });
  const history = h('tbody', { id: 'history' });
  const syncButton = h('button', { id: 'sync', onclick: () => operate(name, { sync: { prune: false } }) }, 'Sync');
  main.replaceChildren(
    title,
    h('div', { class: 'filters' }, syncButton, h('a', { href: '#/apps' }, '← all applications')),
    summary,
    h('div', { class: 'layout' },
      h('div', {}, h('h2', {}, 'Resources'), tree),
      h('div', {}, h('h2', {}, 'Details'), details)),
    h('h2', {}, 'Last operation'), operation,
    h('h2', {}, 'Conditions'), conditions,
    h('h2', {}, 'Out of sync'), diffs,
    h('h2', {}, 'Sync history'),
    h('table', {}, h('thead', {}, h('tr', {}, ['Revision', 'Author', 'Message', 'Deployed', ''].map((c) => h('th', {}, c)))), history));

  let drawing = false;
  let again = false;
  const redraw = async () => {
    if (drawing) { again = true; return; }
    drawing = true;
    try {
      do {
        again = false;
        await drawTree(state, tree, select, signal);
      } while (again && !signal.aborted);
    } finally {
      drawing = false;
    }
  };
  const select = (node) => {
    state.selected = node.id;
    for (const g of tree.querySelectorAll('.node')) g.classList.toggle('selected', g.dataset.id === node.id);
    if (state.details) state.details.abort();
    state.details = new AbortController();
    signal.addEventListener('abort', () => state.details.abort());
    showDetails(node, details, state.details.signal);
  };

  live(`${APPS}?fieldSelector=metadata.name%3D${encodeURIComponent(name)}`, signal, (items) => {
    const app = items[0];
    if (!app) {
      summary.replaceChildren(h('p', { class: 'muted' }, `Application ${name} does not exist (or is gone).`));
      return;
    }
    state.app = app;
    const info = revisionInfo(app);
    title.replaceChildren(name, badge(app.status?.sync?.status), badge(app.status?.health?.status));
    summary.replaceChildren(
      h('div', {}, h('span', {}, 'Revision'), h('code', { id: 'revision' }, short(info.revision) || '—')),
      h('div', {}, h('span', {}, 'Commit'), `${info.message}${info.author ? ` (${info.author})` : ''}`),
      h('div', {}, h('span', {}, 'Repository'), `${app.spec?.source?.repoURL || ''} ${app.spec?.source?.path || ''}`),
      h('div', {}, h('span', {}, 'Destination'), app.spec?.destination?.namespace || '—'),
      h('div', {}, h('span', {}, 'Last sync'), ago(info.at) || '—'));
    renderOperation(app, operation);
    conditions.replaceChildren(...((app.status?.conditions || []).map((c) => h('li', {}, badge(c.type), ' ', h('span', { class: 'mono' }, c.message))))
      .concat((app.status?.conditions || []).length ? [] : [h('li', { class: 'muted' }, 'None.')]));
    const entries = [...(app.status?.history || [])].reverse();
    history.replaceChildren(...entries.map((e) => h('tr', { 'data-revision': e.revision },
      h('td', { class: 'mono' }, short(e.revision)),
      h('td', {}, e.author),
      h('td', { class: 'message' }, e.message),
      h('td', { class: 'muted' }, ago(e.deployedAt)),
      h('td', {}, e.revision === info.revision
        ? h('span', { class: 'muted' }, 'current')
        : h('button', { class: 'secondary rollback', 'data-revision': e.revision, onclick: () => operate(name, { rollback: { revision: e.revision } }) }, 'Rollback to this revision')))));
    renderDrift(app, diffs, signal);
    redraw();
  }, (e) => showNotice(`Cannot read application ${name}: ${e.message}`));
  live('/api/v1/pods', signal, (items) => {
    state.pods = new Map(items.map((p) => [p.metadata.uid, p]));
    if (state.app) redraw();
  });
  live('/apis/apps/v1/replicasets', signal, (items) => {
    state.replicaSets = new Map(items.map((r) => [r.metadata.uid, r]));
    if (state.app) redraw();
  });
}

function renderOperation(app, el) {
  const op = app.status?.operationState;
  if (!op) return el.replaceChildren(h('p', { class: 'muted' }, 'None yet.'));
  const by = op.initiatedBy?.username;
  el.replaceChildren(h('p', {}, badge(op.phase), ' ', op.message || '',
    by ? h('span', { class: 'muted' }, ` — initiated by ${by}`) : '',
    op.revertCommit ? h('span', { class: 'muted' }, ` — revert commit ${short(op.revertCommit)}`) : '',
    op.finishedAt ? h('span', { class: 'muted' }, ` — ${ago(op.finishedAt)}`) : ''));
}

async function renderDrift(app, el, signal) {
  const out = (app.status?.resources || []).filter((r) => r.status === 'OutOfSync');
  if (!out.length) return el.replaceChildren(h('p', { class: 'muted' }, 'Every object matches the repository.'));
  const parts = [];
  for (const r of out) {
    const apiVersion = r.group ? `${r.group}/${r.version}` : r.version;
    const label = `${r.kind} ${r.namespace ? `${r.namespace}/` : ''}${r.name}`;
    try {
      const live = await api(await objectPath(apiVersion, r.kind, r.namespace, r.name), { signal });
      const applied = JSON.parse(live.metadata?.annotations?.['gitplane.io/last-applied'] || 'null');
      if (!applied) {
        parts.push(h('p', {}, `${label}: not applied yet; the next sync creates it.`));
        continue;
      }
      const before = yaml(withoutNoise(applied));
      const after = yaml(project(live, withoutNoise(applied)));
      parts.push(h('p', {}, h('strong', {}, label), before === after
        ? ' — the repository changed since the last sync (see Review for what would change)'
        : ' — changed in the cluster (- repository, + live):'));
      if (before !== after) parts.push(diffView(before, after));
    } catch (e) {
      parts.push(h('p', {}, `${label}: ${e.code === 404 ? 'missing in the cluster; the next sync creates it' : e.message}`));
    }
  }
  if (!signal.aborted) el.replaceChildren(...parts);
}

// Builds the resource tree (Application → its objects → ReplicaSets → Pods, through owner
// references) and draws it as an SVG graph.
async function drawTree(state, container, select, signal) {
  const app = state.app;
  const nodes = [{ id: 'app', kind: 'Application', name: app.metadata.name, health: app.status?.health?.status, sync: app.status?.sync?.status, parent: null, object: app }];
  for (const r of app.status?.resources || []) {
    const apiVersion = r.group ? `${r.group}/${r.version}` : r.version;
    let object = null;
    try {
      object = await api(await objectPath(apiVersion, r.kind, r.namespace, r.name), { signal });
    } catch (e) {
      if (signal.aborted) return;
    }
    nodes.push({ id: object?.metadata?.uid || `${r.kind}/${r.namespace}/${r.name}`, kind: r.kind, name: r.name, namespace: r.namespace, apiVersion, health: object ? r.health : 'Missing', sync: r.status, parent: 'app', object });
  }
  const known = new Set(nodes.map((n) => n.id));
  const children = [
    ...[...state.replicaSets.values()].map((o) => ({ o, kind: 'ReplicaSet', apiVersion: 'apps/v1', health: replicaSetHealth(o) })),
    ...[...state.pods.values()].map((o) => ({ o, kind: 'Pod', apiVersion: 'v1', health: podHealth(o) })),
  ];
  for (let added = true; added;) {
    added = false;
    for (const c of children) {
      if (known.has(c.o.metadata.uid)) continue;
      const owner = (c.o.metadata.ownerReferences || []).find((r) => known.has(r.uid));
      if (!owner) continue;
      if (c.kind === 'ReplicaSet' && !(c.o.spec?.replicas || c.o.status?.replicas)) continue;
      known.add(c.o.metadata.uid);
      nodes.push({ id: c.o.metadata.uid, kind: c.kind, name: c.o.metadata.name, namespace: c.o.metadata.namespace, apiVersion: c.apiVersion, health: c.health, parent: owner.uid, object: c.o });
      added = true;
    }
  }
  if (signal.aborted) return;

  // Layout: one column per depth, rows in depth-first order so children sit beside parents.
  const byParent = new Map();
  for (const n of nodes) {
    if (!byParent.has(n.parent)) byParent.set(n.parent, []);
    byParent.get(n.parent).push(n);
  }
  for (const list of byParent.values()) list.sort((a, b) => (a.kind + a.name).localeCompare(b.kind + b.name));
  const W = 210;
  const H = 46;
  const GX = 50;
  const GY = 12;
  let row = 0;
  const place = (n, depth) => {
    const kids = byParent.get(n.id) || [];
    n.x = 16 + depth * (W + GX);
    if (!kids.length) {
      n.y = 16 + row++ * (H + GY);
      return;
    }
    kids.forEach((k) => place(k, depth + 1));
    n.y = (kids[0].y + kids.at(-1).y) / 2;
  };
  place(nodes[0], 0);
  const width = Math.max(...nodes.map((n) => n.x)) + W + 16;
  const height = Math.max(...nodes.map((n) => n.y)) + H + 16;
  const index = new Map(nodes.map((n) => [n.id, n]));
  const edges = nodes.filter((n) => n.parent).map((n) => {
    const p = index.get(n.parent);
    const x1 = p.x + W;
    const y1 = p.y + H / 2;
    const x2 = n.x;
    const y2 = n.y + H / 2;
    return s('path', { class: 'edge', d: `M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}` });
  });
  const boxes = nodes.map((n) => {
    const label = n.name.length > 26 ? `${n.name.slice(0, 25)}…` : n.name;
    const status = [n.health, n.sync].filter(Boolean).join(', ');
    return s('g', { class: `node${state.selected === n.id ? ' selected' : ''}`, transform: `translate(${n.x},${n.y})`, 'data-id': n.id, 'data-kind': n.kind, 'data-name': n.name, 'data-health': n.health || '', onclick: () => select(n) },
      s('title', {}, `${n.kind} ${n.namespace ? `${n.namespace}/` : ''}${n.name}${status ? ` (${status})` : ''}`),
      s('rect', { width: W, height: H, rx: 7 }),
      s('circle', { class: `dot-${n.health || 'Unknown'}`, cx: 14, cy: 16, r: 5 }),
      n.sync ? s('circle', { class: `dot-${n.sync}`, cx: 14, cy: 31, r: 5 }) : [],
      s('text', { class: 'kind', x: 26, y: 18 }, n.kind),
      s('text', { class: 'name', x: 26, y: 34 }, label));
  });
  container.replaceChildren(s('svg', { width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'resource tree' }, edges, boxes));
}

function showDetails(node, el, signal) {
  const body = h('div');
  const tabs = [['YAML', showYaml], ['Events', showEvents]];
  if (node.kind === 'Pod') tabs.push(['Logs', showLogs]);
  let tabSignal = null;
  const buttons = tabs.map(([label, show]) => h('button', {
    'data-tab': label,
    onclick: (e) => {
      for (const b of buttons) b.classList.toggle('active', b === e.target);
      if (tabSignal) tabSignal.abort();
      tabSignal = new AbortController();
      signal.addEventListener('abort', () => tabSignal.abort());
      show(node, body, tabSignal.signal).catch((err) => {
        if (!tabSignal.signal.aborted) body.replaceChildren(h('p', {}, err.message));
      });
    },
  }, label));
  el.replaceChildren(h('p', {}, h('strong', {}, `${node.kind} `), `${node.namespace ? `${node.namespace}/` : ''}${node.name}`), h('div', { class: 'tabs' }, buttons), body);
  buttons[0].click();
}

async function showYaml(node, el, signal) {
  let object = node.object;
  if (node.kind !== 'Application' && node.apiVersion) {
    object = await api(await objectPath(node.apiVersion, node.kind, node.namespace, node.name), { signal });
  }
  el.replaceChildren(h('pre', { id: 'yaml' }, object ? yaml(withoutNoise(object)) : 'not in the cluster'));
}

async function showEvents(node, el, signal) {
  const ns = node.namespace || 'default';
  const list = await api(`/api/v1/namespaces/${encodeURIComponent(ns)}/events`, { signal });
  const uid = node.object?.metadata?.uid;
  const events = (list.items || [])
    .filter((e) => (uid && e.involvedObject?.uid === uid) || (e.involvedObject?.kind === node.kind && e.involvedObject?.name === node.name))
    .sort((a, b) => Date.parse(b.lastTimestamp || b.eventTime || 0) - Date.parse(a.lastTimestamp || a.eventTime || 0));
  el.replaceChildren(events.length
    ? h('table', {}, h('tbody', {}, events.map((e) => h('tr', {},
      h('td', {}, badge(e.type === 'Warning' ? 'Degraded' : 'Healthy'), ' ', e.reason),
      h('td', {}, e.message),
      h('td', { class: 'muted' }, `${ago(e.lastTimestamp || e.eventTime)}${e.count > 1 ? ` ×${e.count}` : ''}`)))))
    : h('p', { class: 'muted' }, 'No events.'));
}

async function showLogs(node, el, signal) {
  const containers = (node.object?.spec?.containers || []).map((c) => c.name);
  const choice = h('select', {}, containers.map((c) => h('option', { value: c }, c)));
  const pre = h('pre', { id: 'logs' });
  el.replaceChildren(containers.length > 1 ? h('p', {}, 'Container ', choice) : '', pre);
  let follow = null;
  const start = async () => {
    if (follow) follow.abort();
    follow = new AbortController();
    signal.addEventListener('abort', () => follow.abort());
    pre.textContent = '';
    const path = `/api/v1/namespaces/${encodeURIComponent(node.namespace)}/pods/${encodeURIComponent(node.name)}/log?follow=true&tailLines=500&container=${encodeURIComponent(choice.value)}`;
    try {
      const response = await fetch(path, { signal: follow.signal, headers: headers({ Accept: '*/*' }) });
      if (!response.ok) throw await failure(response);
      await lines(response, (line) => {
        pre.append(`${line}\n`);
        pre.scrollTop = pre.scrollHeight;
      });
    } catch (e) {
      if (!follow.signal.aborted) pre.append(`\n[${e.message}]`);
    }
  };
  choice.addEventListener('change', start);
  start();
}

// ---- cluster -----------------------------------------------------------------------------

function quantity(text) {
  if (text === undefined || text === null) return 0;
  const m = /^([0-9.]+)([a-zA-Z]*)$/.exec(String(text));
  if (!m) return 0;
  const units = { m: 1e-3, k: 1e3, K: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4 };
  return parseFloat(m[1]) * (units[m[2]] || 1);
}

function usage(used, total, format) {
  const share = total ? Math.min(1, used / total) : 0;
  const bar = h('span', { class: 'bar' }, h('i', { style: `width:${Math.round(share * 100)}%` }));
  return h('span', {}, bar, `${format(used)} / ${format(total)}`);
}

const cores = (v) => `${Math.round(v * 100) / 100}`;
const bytes = (v) => `${Math.round(v / 1024 ** 2)}Mi`;

function clusterPage(signal) {
  const nodesBody = h('tbody', { id: 'nodes' });
  const warnings = h('tbody', { id: 'warnings' });
  let nodes = [];
  let pods = [];
  const render = () => {
    nodesBody.replaceChildren(...nodes.map((n) => {
      const mine = pods.filter((p) => p.spec?.nodeName === n.metadata.name && !['Succeeded', 'Failed'].includes(p.status?.phase));
      const request = (what) => mine.reduce((sum, p) => sum + (p.spec?.containers || []).reduce((s2, c) => s2 + quantity(c.resources?.requests?.[what]), 0), 0);
      const alloc = n.status?.allocatable || n.status?.capacity || {};
      const ready = (n.status?.conditions || []).find((c) => c.type === 'Ready')?.status === 'True';
      return h('tr', { 'data-node': n.metadata.name },
        h('td', {}, n.metadata.name),
        h('td', {}, badge(ready ? 'Healthy' : 'Degraded')),
        h('td', {}, usage(request('cpu'), quantity(alloc.cpu), cores)),
        h('td', {}, usage(request('memory'), quantity(alloc.memory), bytes)),
        h('td', {}, usage(mine.length, quantity(alloc.pods), String)),
        h('td', { class: 'muted' }, mine.map((p) => `${p.metadata.namespace}/${p.metadata.name}`).join(', ')));
    }));
  };
  main.replaceChildren(
    h('h1', {}, 'Cluster'),
    h('h2', {}, 'Nodes (requests of the pods on each node against what it can allocate)'),
    h('table', {}, h('thead', {}, h('tr', {}, ['Node', 'Ready', 'CPU', 'Memory', 'Pods', 'Pods on the node'].map((c) => h('th', {}, c)))), nodesBody),
    h('h2', {}, 'Recent Warning events'),
    h('table', {}, h('thead', {}, h('tr', {}, ['Object', 'Reason', 'Message', 'Last seen'].map((c) => h('th', {}, c)))), warnings));
  const refused = (e) => showNotice(`Some of the cluster is hidden from you: ${e.message}`);
  live('/api/v1/nodes', signal, (items) => { nodes = items; render(); }, refused);
  live('/api/v1/pods', signal, (items) => { pods = items; render(); }, refused);
  live('/api/v1/events', signal, (items) => {
    const recent = items.filter((e) => e.type === 'Warning')
      .sort((a, b) => Date.parse(b.lastTimestamp || b.eventTime || 0) - Date.parse(a.lastTimestamp || a.eventTime || 0))
      .slice(0, 50);
    warnings.replaceChildren(...(recent.length ? recent.map((e) => h('tr', {},
      h('td', {}, `${e.involvedObject?.kind || ''} ${e.involvedObject?.namespace ? `${e.involvedObject.namespace}/` : ''}${e.involvedObject?.name || ''}`),
      h('td', {}, e.reason || ''),
      h('td', {}, e.message || ''),
      h('td', { class: 'muted' }, ago(e.lastTimestamp || e.eventTime)))) : [h('tr', {}, h('td', { colspan: 4, class: 'muted' }, 'No warnings.'))]));
  }, refused);
}

// ---- review ------------------------------------------------------------------------------

// The report of `gitplane diff -o markdown`, drawn as a forge draws it. Only the shapes the
// report uses are recognised (a heading, error quotes, the summary table, collapsible diffs);
// every piece of text goes in as a text node.
function inline(text) {
  const parts = [];
  const re = /`([^`]*)`|\*\*([^*]*)\*\*|:x:|:white_check_mark:/g;
  let at = 0;
  for (let m; (m = re.exec(text));) {
    if (m.index > at) parts.push(text.slice(at, m.index));
    if (m[1] !== undefined) parts.push(h('code', {}, m[1]));
    else if (m[2] !== undefined) parts.push(h('strong', {}, m[2]));
    else parts.push(m[0] === ':x:' ? '❌' : '✅');
    at = re.lastIndex;
  }
  if (at < text.length) parts.push(text.slice(at));
  return parts;
}

function cells(row) {
  return row.replace(/^\|/, '').replace(/\|$/, '').split(/(?<!\\)\|/).map((c) => c.trim().replaceAll('\\|', '|'));
}

function markdownReport(markdown) {
  const out = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    let m;
    if ((m = /^(#{1,6}) (.*)$/.exec(line))) {
      out.push(h(`h${m[1].length}`, {}, inline(m[2])));
    } else if (line.startsWith('> ')) {
      out.push(h('blockquote', { class: 'error' }, inline(line.slice(2))));
    } else if (line.startsWith('|')) {
      const rows = [];
      for (; i < lines.length && lines[i].startsWith('|'); i++) rows.push(lines[i]);
      i--;
      const [head, , ...body] = rows;
      out.push(h('table', { class: 'summary-table' },
        h('thead', {}, h('tr', {}, cells(head).map((c) => h('th', {}, inline(c))))),
        h('tbody', {}, body.map((r) => {
          const cs = cells(r);
          const object = /^`(.*)`$/.exec(cs[0])?.[1] || cs[0];
          return h('tr', { 'data-object': object, class: cs.at(-1).startsWith(':x:') ? 'refused' : undefined },
            cs.map((c) => h('td', {}, inline(c))));
        }))));
    } else if ((m = /^<details><summary><code>(.*)<\/code> \((\w+)\)<\/summary>$/.exec(line))) {
      const diff = [];
      for (i++; i < lines.length && lines[i] !== '</details>'; i++) {
        if (lines[i] === '```diff' || lines[i] === '```' || lines[i] === '') continue;
        diff.push(lines[i]);
      }
      const pre = h('pre', { class: 'diff' }, diff.map((l) => h('span', {
        class: l.startsWith('+') && !l.startsWith('+++') ? 'add' : l.startsWith('-') && !l.startsWith('---') ? 'del' : undefined,
      }, `${l}\n`)));
      out.push(h('details', { 'data-object': m[1] }, h('summary', {}, h('code', {}, m[1]), ` (${m[2]})`), pre));
    } else if (line.trim()) {
      out.push(h('p', {}, inline(line)));
    }
  }
  return out;
}

const REVIEW = '/gitplane/v1/applications';

function reviewPage(signal) {
  const appSelect = h('select', { id: 'review-app' });
  const branch = h('select', { id: 'review-branch' }, h('option', { value: '' }, 'branch…'));
  const revision = h('input', { id: 'review-revision', placeholder: 'or a tag or commit' });
  const run = h('button', { id: 'review-run' }, 'Review');
  const report = h('div', { class: 'panel report', id: 'review-report' },
    h('p', { class: 'muted' }, 'Pick an application and a branch (or type a revision), then Review.'));
  main.replaceChildren(
    h('h1', {}, 'Review'),
    h('p', {}, 'What a branch or revision would change before it is merged: the report of `gitplane diff`, which renders the revision as the Application would, diffs it against the live cluster and dry-runs every changed object through the API server as you (webhooks, policies and your RBAC speak). Nothing is applied.'),
    h('div', { class: 'filters' }, h('label', {}, 'Application ', appSelect), branch, revision, run),
    h('pre', { id: 'review-command' }),
    h('h2', {}, 'Report'),
    report);
  const wanted = () => revision.value.trim() || branch.value;
  const command = () => {
    document.getElementById('review-command').textContent =
      `gitplane diff --app ${appSelect.value || 'APP'} --head ${wanted() || 'BRANCH'} --output markdown`;
  };
  const loadBranches = async () => {
    command();
    if (!appSelect.value) return;
    try {
      const { branches } = await api(`${REVIEW}/${encodeURIComponent(appSelect.value)}/branches`, { signal });
      branch.replaceChildren(h('option', { value: '' }, 'branch…'), ...branches.map((b) => h('option', { value: b }, b)));
    } catch (e) {
      if (e.name !== 'AbortError') showNotice(`Cannot list the branches of ${appSelect.value}: ${e.message}`);
    }
  };
  const review = async () => {
    const app = appSelect.value;
    const rev = wanted();
    if (!app || !rev) return showNotice('Pick an application and a branch or revision.');
    showNotice('');
    run.disabled = true;
    report.replaceChildren(h('p', { class: 'muted' }, `Rendering and dry-running ${rev}…`));
    try {
      const result = await api(`${REVIEW}/${encodeURIComponent(app)}/review?revision=${encodeURIComponent(rev)}`, { signal });
      report.replaceChildren(...markdownReport(result.markdown));
      report.dataset.exitCode = result.exitCode;
    } catch (e) {
      if (e.name === 'AbortError') return;
      report.replaceChildren(h('p', { class: 'muted' }, 'No report.'));
      showNotice(`${e.code === 403 ? 'Refused (403 Forbidden)' : `Review failed (${e.code || 'network'})`}: ${e.message}`);
    } finally {
      run.disabled = false;
    }
  };
  appSelect.addEventListener('change', loadBranches);
  branch.addEventListener('change', () => { revision.value = ''; command(); });
  revision.addEventListener('input', command);
  run.addEventListener('click', review);
  api(APPS, { signal }).then((list) => {
    appSelect.replaceChildren(...(list.items || []).map((a) => h('option', { value: a.metadata.name }, a.metadata.name)));
    loadBranches();
  }).catch((e) => showNotice(e.message));
}

// ---- start -------------------------------------------------------------------------------

document.getElementById('signout').addEventListener('click', () => signOut(''));
window.addEventListener('hashchange', route);
route();
