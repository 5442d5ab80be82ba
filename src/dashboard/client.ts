/**
 * The dashboard's browser script, shipped inline by page.ts. Plain ES2017 (no modules, no
 * build step). It builds the DOM once per `init` and afterwards only updates text, colours and
 * SVG path data in place, so 256 tiles at 2 Hz stay cheap for the browser.
 */
export const CLIENT_JS = String.raw`
(function () {
  'use strict';
  var T = window.MF_THEME, P = T.palette, S = P.series;
  var SVGNS = 'http://www.w3.org/2000/svg';
  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function sv(tag, attrs) {
    var e = document.createElementNS(SVGNS, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }
  function setText(e, s) { if (e.textContent !== s) e.textContent = s; }
  function isNum(v) { return typeof v === 'number' && isFinite(v); }

  function fmt(v) {
    if (!isNum(v)) return '\u2013';
    var a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(2) + 'M';
    if (a >= 1e4) return (v / 1e3).toFixed(1) + 'k';
    if (a >= 100) return Math.round(v).toLocaleString('en-US');
    if (a >= 10) return v.toFixed(1);
    if (a === 0) return '0';
    return v.toFixed(2);
  }
  function fmtInt(v) { return isNum(v) ? Math.round(v).toLocaleString('en-US') : '\u2013'; }
  function fmtMs(v) {
    if (!isNum(v)) return '\u2013';
    if (v >= 1000) return (v / 1000).toFixed(2) + ' s';
    if (v >= 100) return Math.round(v) + ' ms';
    if (v >= 10) return v.toFixed(1) + ' ms';
    return v.toFixed(2) + ' ms';
  }
  function pct(v) { return isNum(v) ? (v * 100).toFixed(1) + '%' : '\u2013'; }

  // KV-usage colour scale, quantised to 1 % so unchanged tiles keep the same string.
  var stops = T.kvStops.map(function (s) {
    var h = s[1];
    return [s[0], parseInt(h.slice(1, 3), 16), parseInt(h.slice(3, 5), 16), parseInt(h.slice(5, 7), 16)];
  });
  var kvCache = [];
  for (var q = 0; q <= 100; q++) {
    var u = q / 100, i = 1;
    while (i < stops.length - 1 && u > stops[i][0]) i++;
    var a0 = stops[i - 1], a1 = stops[i], f = a1[0] > a0[0] ? (u - a0[0]) / (a1[0] - a0[0]) : 1;
    var rgb = [1, 2, 3].map(function (j) { return Math.round(a0[j] + (a1[j] - a0[j]) * f); });
    var lum = (0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]) / 255;
    kvCache.push({ c: 'rgb(' + rgb.join(',') + ')', dark: lum < 0.55 });
  }
  function kvColor(kv) { return kvCache[Math.max(0, Math.min(100, Math.round(kv * 100)))]; }

  var st = { dense: false, init: null, fi: {}, hist: null, cap: 300, lastSeq: 0, tiles: [], hover: -1, tick: null, charts: [], cards: [], pub: {} };
  window.mfDashboard = { ticks: 0, inits: 0, lastTick: null };

  // ---- cards ---------------------------------------------------------------------------------
  var CARDS = [
    { k: 'reqRate', label: 'Requests / s', v: function (n) { return fmt(n.reqRate); }, raw: function (n) { return n.reqRate; },
      sub: function (n) { return fmtInt(n.finished) + ' finished'; } },
    { k: 'tokRate', label: 'Output tokens / s', v: function (n) { return fmt(n.tokRate); }, raw: function (n) { return n.tokRate; },
      sub: function (n) { return 'prompt ' + fmt(n.promptRate) + ' / s'; } },
    { k: 'ttft', label: 'TTFT p50', v: function (n) { return fmtMs(n.ttft[0]); }, raw: function (n) { return n.ttft[0]; },
      sub: function (n) { return 'p90 ' + fmtMs(n.ttft[1]) + ' \u00b7 p99 ' + fmtMs(n.ttft[2]); } },
    { k: 'itl', label: 'ITL p50', v: function (n) { return fmtMs(n.itl[0]); }, raw: function (n) { return n.itl[0]; },
      sub: function (n) { return 'p90 ' + fmtMs(n.itl[1]) + ' \u00b7 p99 ' + fmtMs(n.itl[2]); } },
    { k: 'running', label: 'Running', v: function (n) { return fmtInt(n.running); }, raw: function (n) { return n.running; },
      sub: function (n, t) { var b = 0; for (var i = 0; i < t.ranks.run.length; i++) if (t.ranks.run[i] > 0) b++; return b + ' of ' + plural(t.ranks.run.length, 'rank') + ' busy'; } },
    { k: 'waiting', label: 'Waiting', v: function (n) { return fmtInt(n.waiting); }, raw: function (n) { return n.waiting; },
      sub: function () { return 'queued in the ranks'; } },
    { k: 'kv', label: 'KV cache (mean)', v: function (n) { return pct(n.kvMean); }, raw: function (n) { return n.kvMean; },
      sub: function (n) { return 'max ' + pct(n.kvMax); } },
    { k: 'prefixHit', label: 'Prefix-cache hits', v: function (n) { return pct(n.prefixHit); }, raw: function (n) { return n.prefixHit; },
      sub: function () { return 'of queried prompt tokens'; } },
    { k: 'preemptions', label: 'Preemptions', v: function (n) { return fmtInt(n.preemptions); }, raw: function (n) { return n.preemptions; },
      sub: function (n) { return fmt(n.preemptRate) + ' / s'; } },
    { k: 'msgRate', label: 'Published msgs / s', v: function (n) { return fmt(n.publisher.msgRate); }, raw: function (n) { return n.publisher.msgRate; },
      sub: function (n) { return 'NATS ' + n.publisher.state + ' \u00b7 ' + fmtInt(n.publisher.dropped) + ' dropped'; } }
  ];
  function buildCards() {
    var box = $('db-cards');
    if (st.cards.length) return;
    CARDS.forEach(function (c) {
      var card = el('div', 'mf-card');
      card.appendChild(el('div', 'mf-card-label', c.label));
      var v = el('div', 'mf-card-value', '\u2013');
      v.setAttribute('data-k', c.k);
      var s = el('div', 'mf-card-sub', '\u00a0');
      card.appendChild(v);
      card.appendChild(s);
      box.appendChild(card);
      st.cards.push({ def: c, v: v, s: s });
    });
  }
  function updateCards(t) {
    var n = t.now;
    st.cards.forEach(function (c) {
      setText(c.v, c.def.v(n, t));
      setText(c.s, c.def.sub(n, t));
      var raw = c.def.raw(n);
      c.v.setAttribute('data-v', raw === null || raw === undefined ? '' : String(raw));
    });
  }

  // ---- tiles ---------------------------------------------------------------------------------
  function makeTile(rank) {
    var tile = el('div', 'db-tile');
    tile.setAttribute('data-rank', String(rank));
    if (st.dense) {
      // Thousands of ranks: a bare coloured cell (no text nodes); the tooltip has the numbers.
      st.tiles[rank] = { el: tile, kv: null, qr: null, qw: null, rs: null, c: '', dark: false, k: -1, run: -1, wait: -1, rst: 0 };
      return tile;
    }
    var kvEl = el('span', 'kv', '0%');
    var qEl = el('span', 'q');
    var qr = document.createTextNode('0');
    var qw = el('i', '', ' \u00b7 0');
    qEl.appendChild(qr);
    qEl.appendChild(qw);
    var rs = el('span', 'rs', '');
    tile.appendChild(el('span', 'r', 'r' + rank));
    tile.appendChild(kvEl);
    tile.appendChild(qEl);
    tile.appendChild(rs);
    st.tiles[rank] = { el: tile, kv: kvEl, qr: qr, qw: qw, rs: rs, c: '', dark: false, k: -1, run: -1, wait: -1, rst: 0 };
    return tile;
  }
  function plural(n, word) { return n + ' ' + word + (n === 1 ? '' : 's'); }
  function buildTiles(init) {
    var box = $('db-workers');
    box.textContent = '';
    st.tiles = [];
    var compact = init.numRanks > 64;
    box.parentNode.classList.toggle('db-compact', compact);
    st.dense = init.numRanks > 512;
    box.parentNode.classList.toggle('db-dense', st.dense);
    var dp = init.dataParallelSize;
    var placement = init.placement.ranks;
    if (dp === 1) {
      // One rank per worker: a worker box would only repeat the tile, so tiles sit in one grid.
      var flat = el('div', 'db-tiles db-flat');
      for (var i = 0; i < placement.length; i++) flat.appendChild(makeTile(placement[i][0]));
      box.appendChild(flat);
    } else {
      var cols = Math.min(dp, compact ? 16 : 8);
      for (var w = 0; w < init.workers.length; w++) {
        var wk = init.workers[w];
        var g = el('div', 'db-worker');
        var lab = el('div', 'db-worker-label');
        lab.appendChild(el('b', '', 'w' + wk.index));
        if (!compact || dp > 2) lab.appendChild(document.createTextNode(' ' + wk.id.slice(0, compact ? 4 : 8)));
        lab.title = 'worker ' + wk.index + ', worker_id 0x' + wk.id;
        g.appendChild(lab);
        var grid = el('div', 'db-tiles');
        grid.style.setProperty('--cols', String(cols));
        for (var r = 0; r < placement.length; r++) if (placement[r][1] === wk.index) grid.appendChild(makeTile(placement[r][0]));
        g.appendChild(grid);
        box.appendChild(g);
      }
    }
    setText($('db-tiles-info'), plural(init.numRanks, 'rank') + ' \u00b7 ' + plural(init.numWorkers, 'worker') + ' \u00d7 ' + plural(dp, 'DP rank'));
  }
  function updateTiles(t) {
    var R = t.ranks;
    for (var r = 0; r < st.tiles.length; r++) {
      var x = st.tiles[r];
      if (!x) continue;
      var kv = R.kv[r], col = kvColor(kv);
      if (x.c !== col.c) { x.el.style.backgroundColor = col.c; x.c = col.c; }
      if (x.kv === null) {
        if (x.rst !== R.rst[r]) { x.el.classList.toggle('restarted', R.rst[r] > 0); x.rst = R.rst[r]; }
        continue;
      }
      if (x.dark !== col.dark) { x.el.classList.toggle('dark', col.dark); x.dark = col.dark; }
      var k = Math.round(kv * 100);
      if (x.k !== k) { x.kv.textContent = k + '%'; x.k = k; }
      if (x.run !== R.run[r]) { x.qr.nodeValue = String(R.run[r]); x.run = R.run[r]; }
      if (x.wait !== R.wait[r]) { x.qw.textContent = ' \u00b7 ' + R.wait[r]; x.wait = R.wait[r]; }
      if (x.rst !== R.rst[r]) { x.rs.textContent = String(R.rst[r]); x.el.classList.toggle('restarted', R.rst[r] > 0); x.rst = R.rst[r]; }
    }
    if (st.hover >= 0) renderTip();
  }
  function renderTip() {
    var tip = $('db-tip'), t = st.tick, r = st.hover;
    if (!t || r < 0 || !st.init) return;
    var p = st.placement.ranks[r] || [r, '?', '?', null, null];
    var rows = [
      ['KV cache', pct(t.ranks.kv[r])],
      ['active blocks', fmtInt(t.ranks.blk[r])],
      ['running', fmtInt(t.ranks.run[r])],
      ['waiting', fmtInt(t.ranks.wait[r])],
      ['restarts', fmtInt(t.ranks.rst[r])],
      ['CPU', p[3] === null ? 'not pinned' : String(p[3])],
      ['TID', p[4] === null ? '\u2013' : String(p[4])]
    ];
    var h = '<b>rank ' + r + '</b> \u00b7 worker ' + p[1] + ' \u00b7 dp ' + p[2];
    for (var i = 0; i < rows.length; i++) h += '<br><span class="k">' + rows[i][0] + '</span>' + rows[i][1];
    tip.innerHTML = h;
  }
  function wireTip() {
    var box = $('db-workers'), tip = $('db-tip');
    box.addEventListener('mouseover', function (e) {
      var tile = e.target.closest ? e.target.closest('.db-tile') : null;
      if (!tile) return;
      st.hover = Number(tile.getAttribute('data-rank'));
      tip.style.display = 'block';
      renderTip();
    });
    box.addEventListener('mousemove', function (e) {
      if (st.hover < 0) return;
      var x = e.clientX + 14, y = e.clientY + 14;
      if (x + tip.offsetWidth > window.innerWidth - 8) x = e.clientX - tip.offsetWidth - 14;
      if (y + tip.offsetHeight > window.innerHeight - 8) y = e.clientY - tip.offsetHeight - 14;
      tip.style.left = x + 'px';
      tip.style.top = y + 'px';
    });
    box.addEventListener('mouseout', function (e) {
      var to = e.relatedTarget;
      if (to && to.closest && to.closest('.db-tile')) return;
      st.hover = -1;
      tip.style.display = 'none';
    });
  }

  // ---- charts --------------------------------------------------------------------------------
  var W = 440, H = 168, M = { l: 46, r: 12, t: 10, b: 22 };
  var CHARTS = [
    { title: 'Requests / s', unit: 'completed', s: [['reqRate', 'req/s']], f: fmt },
    { title: 'Output tokens / s', unit: 'generated', s: [['tokRate', 'tok/s']], f: fmt },
    { title: 'Running & waiting', unit: 'requests, fleet total', s: [['running', 'running'], ['waiting', 'waiting']], f: fmt },
    { title: 'TTFT', unit: 'ms, percentiles over the window', s: [['ttftP50', 'p50'], ['ttftP90', 'p90'], ['ttftP99', 'p99']], f: fmtMs },
    { title: 'ITL', unit: 'ms, percentiles over the window', s: [['itlP50', 'p50'], ['itlP90', 'p90'], ['itlP99', 'p99']], f: fmtMs },
    { title: 'KV-cache usage', unit: '% of blocks', s: [['kvMean', 'mean'], ['kvMax', 'max']], scale: 100, fixedMax: 100, f: function (v) { return isNum(v) ? v.toFixed(1) + '%' : '\u2013'; } },
    { title: 'Prefix-cache hit rate', unit: '% of queried tokens', s: [['prefixHit', 'hit rate']], scale: 100, fixedMax: 100, f: function (v) { return isNum(v) ? v.toFixed(1) + '%' : '\u2013'; } },
    { title: 'Preemptions / s', unit: 'fleet total', s: [['preemptRate', 'preempt/s']], f: fmt },
    { title: 'Publisher', unit: 'messages / s', s: [['msgRate', 'published'], ['dropRate', 'dropped']], f: fmt, colors: [S[1], P.bad] }
  ];
  // Axis top = 4 gridline steps, each step a round number (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 x 10^k).
  var STEPS = [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10];
  function niceMax(v) {
    if (!(v > 0)) return 4;
    var raw = v / 4, mag = Math.pow(10, Math.floor(Math.log10(raw))), i = 0;
    while (STEPS[i] * mag < raw) i++;
    return 4 * STEPS[i] * mag;
  }
  function tickLabel(v) {
    if (v >= 1e6) return +(v / 1e6).toPrecision(3) + 'M';
    if (v >= 1e3) return +(v / 1e3).toPrecision(3) + 'k';
    return String(+v.toPrecision(3));
  }
  function buildCharts() {
    var box = $('db-charts');
    if (st.charts.length) return;
    CHARTS.forEach(function (def, ci) {
      var panel = el('div', 'mf-panel db-chart');
      var title = el('div', 'mf-panel-title');
      title.appendChild(el('h3', '', def.title));
      title.appendChild(el('span', 'mf-unit', def.unit));
      panel.appendChild(title);
      var legend = el('div', 'mf-legend');
      var svg = sv('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': def.title, 'font-size': '10.5', 'font-family': T.fontSans });
      var grid = sv('g', {});
      svg.appendChild(grid);
      var xa = sv('g', {});
      svg.appendChild(xa);
      var lines = [], vals = [];
      var area = sv('path', { fill: (def.colors ? def.colors[0] : S[0]), 'fill-opacity': '0.09', stroke: 'none' });
      svg.appendChild(area);
      def.s.forEach(function (s, i) {
        var color = def.colors ? def.colors[i] : S[i];
        var sp = el('span');
        var sw = el('i');
        sw.style.background = color;
        sp.appendChild(sw);
        sp.appendChild(document.createTextNode(s[1]));
        var b = el('b', '', '\u2013');
        sp.appendChild(b);
        legend.appendChild(sp);
        vals.push(b);
        var path = sv('path', { fill: 'none', stroke: color, 'stroke-width': i === 0 ? '1.8' : '1.4', 'stroke-linejoin': 'round', 'stroke-linecap': 'round' });
        svg.appendChild(path);
        lines.push(path);
      });
      panel.appendChild(legend);
      panel.appendChild(svg);
      box.appendChild(panel);
      st.charts.push({ def: def, grid: grid, xa: xa, lines: lines, vals: vals, area: area, yMax: -1, span: -1 });
    });
  }
  function drawAxes(c, yMax) {
    var g = c.grid;
    while (g.firstChild) g.removeChild(g.firstChild);
    var x0 = M.l, x1 = W - M.r, yb = H - M.b;
    for (var k = 0; k <= 4; k++) {
      var v = yMax * k / 4, y = yb - (yb - M.t) * k / 4;
      g.appendChild(sv('line', { x1: x0, x2: x1, y1: y, y2: y, stroke: k === 0 ? P.axis : P.grid }));
      var tx = sv('text', { x: x0 - 7, y: y + 3.5, 'text-anchor': 'end', fill: P.textMuted });
      tx.textContent = tickLabel(v);
      g.appendChild(tx);
    }
  }
  function drawXAxis(c, spanS) {
    var g = c.xa;
    while (g.firstChild) g.removeChild(g.firstChild);
    var x0 = M.l, x1 = W - M.r, yb = H - M.b;
    var step = spanS > 120 ? 60 : spanS > 30 ? 10 : 5;
    for (var s = 0; s <= spanS; s += step) {
      var x = x1 - (x1 - x0) * s / spanS;
      var tx = sv('text', { x: x, y: yb + 15, 'text-anchor': s === 0 ? 'end' : 'middle', fill: P.textMuted });
      tx.textContent = s === 0 ? 'now' : (step >= 60 ? '\u2212' + (s / 60) + 'm' : '\u2212' + s + 's');
      g.appendChild(tx);
    }
  }
  function drawCharts() {
    var h = st.hist;
    if (!h || h.t.length === 0) return;
    // The x axis grows with the data, a minute at a time, up to the server's history length.
    var tEnd = h.t[h.t.length - 1], haveS = (tEnd - h.t[0]) / 1000;
    var spanS = Math.min(st.init.historyS, Math.max(60, Math.ceil((haveS + 1) / 60) * 60)), tStart = tEnd - spanS * 1000;
    setText($('db-hist-span'), spanS >= 120 ? (spanS / 60) + ' minutes' : spanS === 60 ? 'minute' : spanS + ' s');
    var x0 = M.l, x1 = W - M.r, yb = H - M.b;
    st.charts.forEach(function (c) {
      if (c.span !== spanS) { drawXAxis(c, spanS); c.span = spanS; }
      var scale = c.def.scale || 1, max = 0, cols = [];
      c.def.s.forEach(function (s) {
        var col = h.cols[st.fi[s[0]]];
        cols.push(col);
        for (var i = 0; i < col.length; i++) if (isNum(col[i]) && col[i] * scale > max) max = col[i] * scale;
      });
      var yMax = c.def.fixedMax || niceMax(max * 1.08);
      if (yMax !== c.yMax) { drawAxes(c, yMax); c.yMax = yMax; }
      cols.forEach(function (col, si) {
        var d = '', pen = false, first = -1, lastX = 0;
        for (var i = 0; i < col.length; i++) {
          var v = col[i];
          if (!isNum(v) || h.t[i] < tStart) { pen = false; continue; }
          var x = x0 + (x1 - x0) * (h.t[i] - tStart) / (spanS * 1000);
          var y = yb - (yb - M.t) * Math.min(1, (v * scale) / yMax);
          d += (pen ? 'L' : 'M') + x.toFixed(1) + ' ' + y.toFixed(1);
          if (first < 0) first = x;
          lastX = x;
          pen = true;
        }
        c.lines[si].setAttribute('d', d);
        if (si === 0) {
          c.area.setAttribute('d', d && first >= 0 ? d.replace(/M/g, 'L').replace(/^L/, 'M') + 'L' + lastX.toFixed(1) + ' ' + yb + 'L' + first.toFixed(1) + ' ' + yb + 'Z' : '');
        }
        var last = col.length ? col[col.length - 1] : null;
        setText(c.vals[si], c.def.f(isNum(last) ? last * scale : null));
      });
    });
  }

  // ---- publisher and placement ----------------------------------------------------------------
  var PUB = [['state', 'NATS'], ['msgRate', 'messages / s'], ['published', 'published'], ['dropped', 'dropped'], ['dropRate', 'drops / s'], ['bytes', 'bytes published'], ['buffered', 'buffered messages'], ['reconnects', 'reconnects']];
  function buildPub() {
    var dl = $('db-pub');
    if (st.pub.state) return;
    PUB.forEach(function (p) {
      dl.appendChild(el('dt', '', p[1]));
      var dd = el('dd', '', '\u2013');
      dd.setAttribute('data-k', 'pub-' + p[0]);
      dl.appendChild(dd);
      st.pub[p[0]] = dd;
    });
  }
  function updatePub(n) {
    var p = n.publisher, s = st.pub.state;
    if (s.textContent !== p.state) {
      s.textContent = '';
      var badge = el('span', 'db-badge ' + (p.state === 'connected' ? 'good' : p.state === 'disconnected' ? 'bad' : ''), p.state);
      s.appendChild(badge);
    }
    setText(st.pub.msgRate, fmt(p.msgRate));
    setText(st.pub.published, fmtInt(p.published));
    setText(st.pub.dropped, fmtInt(p.dropped));
    st.pub.dropped.className = p.dropped > 0 ? 'mf-bad' : '';
    setText(st.pub.dropRate, fmt(p.dropRate));
    setText(st.pub.bytes, isNum(p.bytes) ? fmt(p.bytes) + 'B' : '\u2013');
    setText(st.pub.buffered, fmtInt(p.buffered));
    setText(st.pub.reconnects, fmtInt(p.reconnects));
  }
  function renderPlacement(pl) {
    st.placement = pl;
    var tb = $('db-place').tBodies[0];
    tb.textContent = '';
    function row(cells) {
      var tr = el('tr');
      cells.forEach(function (c, i) { tr.appendChild(el('td', i >= 3 ? 'mono' : '', c)); });
      tb.appendChild(tr);
    }
    row(['frontend (main)', '\u2013', '\u2013', '\u2013', String(pl.pid)]);
    if (pl.publisher) row(['publisher', '\u2013', '\u2013', pl.publisher.cpus === null ? 'not pinned' : pl.publisher.cpus, pl.publisher.tid === null ? '\u2013' : String(pl.publisher.tid)]);
    pl.ranks.forEach(function (r) {
      row(['rank ' + r[0], String(r[1]), String(r[2]), r[3] === null ? 'not pinned' : String(r[3]), r[4] === null ? '\u2013' : String(r[4])]);
    });
  }

  // ---- stream ---------------------------------------------------------------------------------
  function onInit(init) {
    var rebuild = !st.init || st.init.numRanks !== init.numRanks || st.init.dataParallelSize !== init.dataParallelSize;
    st.init = init;
    st.fi = {};
    init.fields.forEach(function (f, i) { st.fi[f] = i; });
    st.cap = Math.max(1, Math.round(init.historyS * 1000 / init.sampleMs));
    st.hist = { seq: [], t: [], cols: init.fields.map(function () { return []; }) };
    st.lastSeq = 0;
    init.history.forEach(addSample);
    setText($('db-sub'), init.model + ' \u00b7 ' + plural(init.numRanks, 'rank') + ' (' + plural(init.numWorkers, 'worker') + ' \u00d7 ' + init.dataParallelSize + ') \u00b7 router ' + init.router + ' \u00b7 speedup \u00d7' + init.speedupRatio);
    setText($('db-window'), '(rates and percentiles over the last ' + init.windowS + ' s)');
    setText($('db-footer'), 'Pushed by the server over server-sent events (/dashboard/events) every ' + init.tickMs + ' ms; history sampled every ' + init.sampleMs + ' ms. Thread placement comes from /proc.');
    buildCards();
    buildPub();
    buildCharts();
    if (rebuild) buildTiles(init);
    renderPlacement(init.placement);
    window.mfDashboard.inits++;
    onTick(init.tick);
  }
  function addSample(row) {
    if (row[0] <= st.lastSeq) return false;
    var h = st.hist;
    h.seq.push(row[0]);
    h.t.push(row[1]);
    for (var i = 0; i < h.cols.length; i++) h.cols[i].push(row[2 + i]);
    if (h.t.length > st.cap) {
      h.seq.shift(); h.t.shift();
      for (var j = 0; j < h.cols.length; j++) h.cols[j].shift();
    }
    st.lastSeq = row[0];
    return true;
  }
  var chartsDirty = true;
  function onTick(t) {
    st.tick = t;
    var added = false;
    for (var i = 0; i < t.samples.length; i++) if (addSample(t.samples[i])) added = true;
    if (t.placement) renderPlacement(t.placement);
    updateCards(t);
    updateTiles(t);
    updatePub(t.now);
    if (added) chartsDirty = true;
    if (chartsDirty && !document.hidden) { drawCharts(); chartsDirty = false; }
    var up = t.uptimeS, hh = Math.floor(up / 3600), mm = Math.floor(up / 60) % 60, ss = up % 60;
    setText($('db-status'), 'live \u00b7 up ' + (hh ? hh + 'h ' : '') + (hh || mm ? mm + 'm ' : '') + ss + 's');
    window.mfDashboard.ticks++;
    window.mfDashboard.lastTick = t;
  }
  document.addEventListener('visibilitychange', function () { if (!document.hidden && chartsDirty) { drawCharts(); chartsDirty = false; } });

  wireTip();
  var es = new EventSource('/dashboard/events');
  es.addEventListener('init', function (e) { onInit(JSON.parse(e.data)); $('db-dot').className = 'db-dot on'; });
  es.addEventListener('tick', function (e) { if (st.init) onTick(JSON.parse(e.data)); });
  es.addEventListener('error', function () {
    $('db-dot').className = 'db-dot off';
    setText($('db-status'), es.readyState === 2 ? 'disconnected' : 'reconnecting\u2026');
  });
})();
`;
