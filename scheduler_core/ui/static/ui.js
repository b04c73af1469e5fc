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

  function series(label, key, fill) {
    return {
      label: label,
      stroke: COLOURS[key],
      width: 2,
      fill: fill ? COLOURS[key] + "22" : undefined,
      spanGaps: false,
      points: { show: false },
    };
  }

  function chartOptions(kind, width) {
    var options = {
      width: width,
      height: 200,
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(1, max)]; } } },
      axes: [{}, { size: 52 }],
      legend: { live: true },
    };
    if (kind === "deliveries") {
      options.series = [{}, series("Attempts", "attempts", true), series("Resolved", "resolved", false)];
    } else if (kind === "failures") {
      options.series = [{}, series("Failed or lost", "failed", true)];
    } else {
      options.series = [{}, series("p50 ms", "p50", false), series("p99 ms", "p99", false)];
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
