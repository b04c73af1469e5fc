// scheduler-core dashboard: the pages work without this file. It draws the overview's
// charts (uPlot, vendored) from the figures the page embeds, and asks before a Cancel.
"use strict";

(function () {
  function confirmButtons() {
    document.querySelectorAll("button[data-confirm]").forEach(function (button) {
      button.addEventListener("click", function (event) {
        if (!window.confirm(button.getAttribute("data-confirm"))) {
          event.preventDefault();
        }
      });
    });
  }

  var COLOURS = {
    attempts: "#2857c5",
    resolved: "#1a7f37",
    failed: "#b42318",
    p50: "#2857c5",
    p99: "#b26b00",
  };

  // Counts per minute as bars; lateness as lines with a dot per minute, since a minute
  // with attempts may stand between minutes without any (no line to draw then).
  function bars(label, key) {
    var paths = window.uPlot.paths;
    return {
      label: label,
      stroke: COLOURS[key],
      fill: COLOURS[key] + "99",
      width: 1,
      paths: paths && paths.bars ? paths.bars({ size: [0.8, 24] }) : undefined,
      points: { show: false },
    };
  }

  function line(label, key) {
    return {
      label: label,
      stroke: COLOURS[key],
      width: 2,
      spanGaps: false,
      points: { show: true, size: 5, fill: COLOURS[key] },
    };
  }

  function chartOptions(kind, width) {
    var options = {
      width: width,
      height: 200,
      cursor: { drag: { x: false, y: false } },
      scales: {
        // half a minute each side, so the first and last minutes' bars are whole
        x: { time: true, range: function (u, min, max) { return [min - 30, max + 30]; } },
        y: { range: function (u, min, max) { return [0, Math.max(1, max) * 1.1]; } },
      },
      axes: [{}, { size: 52 }],
      legend: { live: true },
    };
    if (kind === "deliveries") {
      options.series = [{}, bars("Attempts", "attempts"), bars("Resolved", "resolved")];
    } else if (kind === "failures") {
      options.series = [{}, bars("Failed or lost", "failed")];
    } else {
      options.series = [{}, line("p50 ms", "p50"), line("p99 ms", "p99")];
    }
    return options;
  }

  function chartData(kind, figures) {
    if (kind === "deliveries") return [figures.time, figures.attempts, figures.resolved];
    if (kind === "failures") return [figures.time, figures.failed];
    return [figures.time, figures.p50, figures.p99];
  }

  function drawCharts() {
    var source = document.getElementById("activity-data");
    if (!source || typeof window.uPlot !== "function") return;
    var figures = JSON.parse(source.textContent);
    var charts = [];
    document.querySelectorAll("[data-chart]").forEach(function (element) {
      var kind = element.getAttribute("data-chart");
      var width = Math.max(240, element.clientWidth);
      var plot = new window.uPlot(chartOptions(kind, width), chartData(kind, figures), element);
      element.setAttribute("data-drawn", "true");
      charts.push({ plot: plot, element: element });
    });
    var pending = null;
    window.addEventListener("resize", function () {
      if (pending) window.cancelAnimationFrame(pending);
      pending = window.requestAnimationFrame(function () {
        charts.forEach(function (chart) {
          chart.plot.setSize({ width: Math.max(240, chart.element.clientWidth), height: 200 });
        });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    confirmButtons();
    drawCharts();
  });
})();
