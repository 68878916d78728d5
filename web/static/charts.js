// socketd's dashboard: draws the charts of a socket's page with uPlot. A
// chart is an element with data-chart (its kind) and data-values (uPlot's
// data, [[x...], [y...]...]); it is drawn when the page loads and whenever
// htmx swaps one in, and redrawn to its width when that changes.
(function () {
  "use strict";

  function color(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function axis(extra) {
    var a = { stroke: color("--muted"), grid: { stroke: color("--line"), width: 1 }, ticks: { stroke: color("--line"), width: 1 } };
    return Object.assign(a, extra || {});
  }

  function bars(label, stroke) {
    return {
      label: label, stroke: stroke, fill: stroke + "99", width: 1,
      paths: uPlot.paths.bars({ size: [0.8, 24] }), points: { show: false },
    };
  }

  // Options of each kind of chart, for its element and width.
  var kinds = {
    steps: function () {
      return {
        scales: { x: { time: true } },
        series: [{}, bars("Accepted", color("--accent")), bars("Refused", color("--warn"))],
        axes: [axis(), axis({ size: 40 })],
      };
    },
    durations: function (el) {
      var labels = JSON.parse(el.dataset.labels);
      return {
        scales: { x: { time: false, range: [-0.5, labels.length - 0.5] } },
        series: [{ label: "Took", value: function (u, v) { return v == null ? "" : labels[v]; } },
          bars("Connections", color("--accent"))],
        axes: [
          axis({ splits: function () { return labels.map(function (_, i) { return i; }); },
            values: function (u, splits) { return splits.map(function (i) { return labels[i] || ""; }); }, grid: { show: false } }),
          axis({ size: 40 }),
        ],
      };
    },
  };

  var drawn = new WeakMap();

  function draw(el) {
    var kind = kinds[el.dataset.chart];
    if (!kind || typeof uPlot === "undefined") return;
    var old = drawn.get(el);
    if (old) old.destroy();
    var opts = kind(el);
    opts.width = Math.max(el.clientWidth, 200);
    opts.height = 180;
    opts.cursor = { y: false };
    var plot = new uPlot(opts, JSON.parse(el.dataset.values), el);
    drawn.set(el, plot);
  }

  function drawAll(root) {
    root.querySelectorAll("[data-chart]").forEach(draw);
  }

  var resize = new ResizeObserver(function (entries) {
    entries.forEach(function (e) {
      var plot = drawn.get(e.target);
      if (plot && Math.abs(plot.width - e.target.clientWidth) > 1) {
        plot.setSize({ width: Math.max(e.target.clientWidth, 200), height: 180 });
      }
    });
  });

  function watch(root) {
    root.querySelectorAll("[data-chart]").forEach(function (el) { resize.observe(el); });
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); watch(document); });
  document.addEventListener("htmx:afterSwap", function (e) { drawAll(e.detail.target); watch(e.detail.target); });
})();
