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

  // Counts: whole numbers on the y axis.
  var counts = { size: 40, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 1e7, 1e8] };

  // align: 0 centres the bar on its step; -1 and 1 set two series' bars
  // side by side.
  function bars(label, stroke, align) {
    return {
      label: label, stroke: stroke, fill: stroke + "99", width: 1,
      paths: uPlot.paths.bars({ size: [align ? 0.4 : 0.8, 24], align: align || 0 }), points: { show: false },
    };
  }

  // Options of each kind of chart, for its element and width.
  var kinds = {
    steps: function (el, data) {
      // Half a step each side, so that the first and last bars show whole.
      var xs = data[0], half = xs.length > 1 ? (xs[1] - xs[0]) / 2 : 30;
      return {
        scales: { x: { time: true, range: function () { return [xs[0] - half, xs[xs.length - 1] + half]; } } },
        series: [{}, bars("Accepted", color("--accent"), -1), bars("Refused", color("--warn"), 1)],
        axes: [axis(), axis(counts)],
      };
    },
    durations: function (el) {
      var labels = JSON.parse(el.dataset.labels);
      return {
        scales: { x: { time: false, range: [-0.5, labels.length - 0.5] } },
        series: [{ label: "Shorter than", value: function (u, v) { return v == null ? "" : labels[v]; } },
          bars("Connections", color("--accent"))],
        axes: [
          axis({ splits: function () { return labels.map(function (_, i) { return i; }); },
            values: function (u, splits) { return splits.map(function (i) { return labels[i] || ""; }); }, grid: { show: false } }),
          axis(counts),
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
    var data = JSON.parse(el.dataset.values);
    var opts = kind(el, data);
    opts.width = Math.max(el.clientWidth, 200);
    opts.height = 180;
    opts.cursor = { y: false };
    var plot = new uPlot(opts, data, el);
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

  // A chart that htmx takes out of the page is let go: uPlot keeps every
  // chart it draws until it is destroyed.
  function forget(root) {
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      var plot = drawn.get(el);
      if (plot) plot.destroy();
      drawn.delete(el);
      resize.unobserve(el);
    });
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); watch(document); });
  document.addEventListener("htmx:beforeSwap", function (e) { forget(e.detail.target); });
  document.addEventListener("htmx:afterSwap", function (e) { drawAll(e.detail.target); watch(e.detail.target); });
})();
