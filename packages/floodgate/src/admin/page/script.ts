/**
 * The dashboard's script: polls `api/dashboard` every second and draws each limiter's per-second outcomes
 * (uPlot), its busiest clients with an unblock button, and the limit traffic suggests; and, when the
 * handler has a fleet (`api/fleet`), the whole fleet's totals and busiest clients, and each process's share.
 * Plain browser JavaScript, no build step; every text from the server goes in with textContent, never as HTML.
 */
export const DASHBOARD_JS = `(function () {
  'use strict';
  var root = location.pathname.endsWith('/') ? location.pathname : location.pathname + '/';
  var SERIES = [
    ['allowed', '#2e7d32'], ['limited', '#c62828'], ['shed', '#ef6c00'], ['rejected', '#6a1b9a'], ['degraded', '#546e7a']
  ];
  var views = {};
  var tokenInput = document.getElementById('token');
  tokenInput.value = sessionStorage.getItem('floodgate-token') || '';
  tokenInput.addEventListener('change', function () { sessionStorage.setItem('floodgate-token', tokenInput.value); });

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var k in attrs || {}) node.setAttribute(k, attrs[k]);
    if (text !== undefined) node.textContent = String(text);
    return node;
  }
  function headers() {
    var h = { 'Content-Type': 'application/json' };
    if (tokenInput.value) h.Authorization = 'Bearer ' + tokenInput.value;
    return h;
  }
  function api(path, init) {
    return fetch(root + 'api/' + path, Object.assign({ headers: headers() }, init || {})).then(function (r) {
      return r.json().then(function (body) { if (!r.ok) throw new Error(body.error || r.statusText); return body; });
    });
  }
  function status(text) { document.getElementById('status').textContent = text; }

  function viewOf(limiter) {
    var view = views[limiter.name];
    if (view) return view;
    var box = el('section', { 'class': 'limiter', 'data-limiter': limiter.name });
    box.appendChild(el('h2', {}, limiter.name));
    var policies = el('p', { 'class': 'policies' });
    var suggestion = el('p', { 'class': 'suggestion' });
    var row = el('div', { 'class': 'row' });
    var chartBox = el('div', { 'class': 'chart' });
    var tableBox = el('div');
    tableBox.appendChild(el('h3', {}, 'Busiest clients, last minute'));
    var table = el('table', { 'class': 'top' });
    var head = el('tr');
    ['client', 'requests', 'refused', ''].forEach(function (t) { head.appendChild(el('th', {}, t)); });
    table.appendChild(head);
    var body = el('tbody');
    table.appendChild(body);
    tableBox.appendChild(table);
    var note = el('p', { 'class': 'note' });
    tableBox.appendChild(note);
    row.appendChild(chartBox);
    row.appendChild(tableBox);
    box.appendChild(policies);
    box.appendChild(row);
    box.appendChild(suggestion);
    document.getElementById('limiters').appendChild(box);
    var chart = null;
    if (limiter.series) {
      chart = new uPlot({
        width: Math.max(320, Math.min(640, chartBox.clientWidth || 560)), height: 220,
        series: [{}].concat(SERIES.map(function (s) { return { label: s[0], stroke: s[1], width: 1.5 }; })),
        axes: [{}, { label: 'requests / s' }]
      }, [[]].concat(SERIES.map(function () { return []; })), chartBox);
    }
    view = { policies: policies, suggestion: suggestion, body: body, note: note, chart: chart };
    views[limiter.name] = view;
    return view;
  }

  function unblock(limiter, client, button) {
    button.disabled = true;
    api('limiters/' + encodeURIComponent(limiter) + '/clients/' + encodeURIComponent(client.key) + '/reset', { method: 'POST' })
      .then(function () { button.textContent = 'unblocked'; status('unblocked ' + client.label + ' on ' + limiter); })
      .catch(function (e) { button.disabled = false; status('unblock refused: ' + e.message); });
  }

  // The busiest clients by requests, then those refused most that are not among them (no request count).
  function clientRows(top) {
    var refused = {};
    top.refusals.clients.forEach(function (c) { refused[c.key] = c.count; });
    var rows = top.requests.clients.map(function (c) { return Object.assign({}, c, { refused: refused[c.key] || 0 }); });
    top.refusals.clients.forEach(function (c) {
      if (!rows.some(function (r) { return r.key === c.key; })) rows.push(Object.assign({}, c, { count: null, refused: c.count }));
    });
    return rows;
  }
  function clientRow(c) {
    var tr = el('tr', { 'data-key': c.key });
    tr.appendChild(el('td', { 'class': 'client' }, c.label));
    tr.appendChild(el('td', { 'class': 'n' }, c.count === null ? '' : c.count));
    tr.appendChild(el('td', { 'class': 'n' + (c.refused ? ' refused' : '') }, c.refused));
    return tr;
  }

  function draw(limiter) {
    var view = viewOf(limiter);
    view.policies.textContent = limiter.rates.map(function (p) {
      return p.name + ': ' + p.limit + (p.perMinute === null ? ' at once' : ' per ' + (p.window / 1000) + ' s (' + p.perMinute + '/min)');
    }).join(' · ');
    if (!limiter.series) { view.note.textContent = 'traffic is off for this limiter'; return; }
    var points = limiter.series;
    view.chart.setData([points.map(function (p) { return p.at / 1000; })].concat(SERIES.map(function (s) {
      return points.map(function (p) { return p[s[0]]; });
    })));
    view.body.replaceChildren();
    clientRows(limiter.top).forEach(function (c) {
      var tr = clientRow(c);
      var td = el('td');
      var button = el('button', { type: 'button', 'class': 'unblock' }, 'unblock');
      button.addEventListener('click', function () { unblock(limiter.name, c, button); });
      td.appendChild(button);
      tr.appendChild(td);
      view.body.appendChild(tr);
    });
    view.note.textContent = limiter.top.distinct + ' clients; counts are at most ' + limiter.top.requests.bound + ' too high.';
    var s = limiter.suggestion;
    view.suggestion.textContent = 'Observed over ' + Math.round(s.seconds) + ' s, ' + s.clients + ' clients, busiest ' + s.busiestPerMinute + '/min. ' +
      s.limits.map(function (l) {
        return 'To refuse the top ' + (l.share * 100) + '% (' + l.clients + '): ' + (l.atMost ? 'at most ' : '') + l.perMinute + '/min';
      }).join('; ') + '.';
  }

  var shedderChart = null;
  function column(points, name) { return points.map(function (p) { return p[name]; }); }
  function drawShedder(s) {
    var box = document.getElementById('shedder');
    if (!s) { box.hidden = true; return; }
    box.hidden = false;
    document.getElementById('shedder-numbers').textContent =
      'limit ' + Math.round(s.limit) + ', in flight ' + s.inflight + (s.overloaded ? ' (overloaded)' : '') +
      (s.baseline === null ? '' : ', baseline ' + s.baseline.toFixed(1) + ' ms') + ', admitted ' + s.admitted;
    var data = [column(s.series, 'at').map(function (t) { return t / 1000; }), column(s.series, 'limit'), column(s.series, 'inflight'), column(s.series, 'baseline')];
    if (!shedderChart) {
      shedderChart = new uPlot({ width: 560, height: 160, scales: { ms: { auto: true } },
        series: [{}, { label: 'limit', stroke: '#1565c0' }, { label: 'in flight', stroke: '#ef6c00' }, { label: 'baseline ms', stroke: '#546e7a', scale: 'ms' }],
        axes: [{}, {}, { scale: 'ms', side: 1, grid: { show: false } }] },
        data, document.getElementById('shedder-chart'));
    } else shedderChart.setData(data);
  }
  function drawStores(stores) {
    var box = document.getElementById('stores');
    box.hidden = stores.length === 0;
    var list = document.getElementById('stores-list');
    list.textContent = '';
    stores.forEach(function (store) {
      var last = store.series.slice(-60);
      var sum = function (k) { return last.reduce(function (n, p) { return n + (p[k] || 0); }, 0); };
      list.appendChild(el('li', {}, store.limiters.join(', ') + ': ' + store.totals.scripts + ' script calls (' + sum('scripts') +
        ' in the last minute), ' + store.totals.leases + ' quota grants (' + sum('leases') + '), ' + store.totals.localDecisions +
        ' decided from grants, ' + store.totals.failures + ' failed calls'));
    });
  }

  // The fleet's view: asked for until the handler answers that it has no fleet (a 404).
  var fleetKnown = true;
  function drawFleet(f) {
    var box = document.getElementById('fleet');
    box.hidden = f.processes.length === 0;
    document.getElementById('fleet-title').textContent = 'Fleet: ' + f.processes.length + ' process' +
      (f.processes.length === 1 ? '' : 'es') + ' sharing the store, last minute';
    var list = document.getElementById('fleet-limiters');
    list.replaceChildren();
    f.limiters.forEach(function (l) {
      var part = el('div', { 'class': 'fleet-limiter', 'data-limiter': l.name });
      part.appendChild(el('h3', {}, l.name + ': ' + l.top.requests.total + ' requests, ' + l.top.refusals.total +
        ' refused, over ' + l.processes + ' process' + (l.processes === 1 ? '' : 'es')));
      var table = el('table', { 'class': 'top' });
      var head = el('tr');
      ['client', 'requests', 'refused'].forEach(function (t) { head.appendChild(el('th', {}, t)); });
      table.appendChild(head);
      var body = el('tbody');
      clientRows(l.top).forEach(function (c) { body.appendChild(clientRow(c)); });
      table.appendChild(body);
      part.appendChild(table);
      part.appendChild(el('p', { 'class': 'note' }, 'counts are at most ' + l.top.requests.bound + ' too high.'));
      list.appendChild(part);
    });
    var rows = document.querySelector('#fleet-processes tbody');
    rows.replaceChildren();
    f.processes.forEach(function (p) {
      var tr = el('tr', { 'data-process': p.id });
      tr.appendChild(el('td', { 'class': 'process' }, p.id));
      tr.appendChild(el('td', { 'class': 'n' }, p.requests));
      tr.appendChild(el('td', { 'class': 'n' + (p.refusals ? ' refused' : '') }, p.refusals));
      tr.appendChild(el('td', { 'class': 'n' }, Math.max(0, Math.round((f.now - p.at) / 1000)) + ' s ago'));
      rows.appendChild(tr);
    });
  }
  function pollFleet() {
    if (!fleetKnown) return Promise.resolve();
    return fetch(root + 'api/fleet?window=1m&n=10', { headers: headers() }).then(function (r) {
      if (r.status === 404) { fleetKnown = false; document.getElementById('fleet').hidden = true; return; }
      return r.json().then(function (f) { if (r.ok) drawFleet(f); else document.getElementById('fleet').hidden = true; });
    }).catch(function () { document.getElementById('fleet').hidden = true; });
  }

  function poll() {
    api('dashboard?seconds=300').then(function (d) {
      d.limiters.forEach(draw);
      drawShedder(d.shedder);
      drawStores(d.stores || []);
      document.body.setAttribute('data-updated', String(d.now));
      if (!/^unblock/.test(document.getElementById('status').textContent)) status('live · ' + new Date(d.now).toLocaleTimeString());
      return pollFleet();
    }).catch(function (e) { status('cannot read the admin API: ' + e.message); })
      .finally(function () { setTimeout(poll, 1000); });
  }
  poll();
})();
`;
