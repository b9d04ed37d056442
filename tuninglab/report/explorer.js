// The explorer page's script: tuninglab/report/explorer.py inlines it, with the data it reads.
// Every number arrives formatted; names and values reach the page only as text.
const DATA = JSON.parse(document.getElementById("explorer-data").textContent);
const $ = (id) => document.getElementById(id);
// Plotly reads a few HTML tags in its SVG text (not in parcoords): names and values go in as plain text
const plain = (text) => String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
let ds, current; // the chosen dataset's data, and the index of the run shown

function fill(select, values, labels) {
  select.replaceChildren(...values.map((value, i) => new Option(labels[i], value)));
}

// one row per metric of the chosen dataset: its label, then this run's value, the baseline's and the
// difference
function metricRows() {
  $("metrics").replaceChildren(...ds.metrics.map(([key, label]) => {
    const row = document.createElement("tr"), name = document.createElement("td");
    name.textContent = label;
    row.append(name, ...["metric-", "baseline-", "diff-"].map((prefix) => {
      const cell = document.createElement("td");
      cell.id = prefix + key;
      return cell;
    }));
    return row;
  }));
}

function chooseDataset() {
  ds = DATA.datasets[$("dataset").value];
  metricRows();
  $("controls").replaceChildren(...ds.params.map((p) => {
    const label = document.createElement("label"), select = document.createElement("select");
    select.id = p.id;
    fill(select, p.values, p.values);
    select.onchange = () => pick(p.name, select.value);
    label.append(p.name + " ", select);
    return label;
  }));
  fill($("run"), ds.runs.map((run, i) => i), ds.runs.map((run) => run.experiment));
  const names = ds.params.map((p) => p.name);
  fill($("scatter-param"), names, names);
  $("unfinished").textContent = ds.unfinished.length ? "Not selectable: " + ds.unfinished.join("; ") : "";
  drawParcoords();
  show(ds.baseline ?? 0);
}

// the run with this value that differs least from the run shown (the first such run on a tie)
function pick(name, value) {
  const now = ds.runs[current].settings;
  const distance = (i) => ds.params.filter((p) => ds.runs[i].settings[p.name] !== now[p.name]).length;
  const matches = ds.runs.map((run, i) => i).filter((i) => ds.runs[i].settings[name] === value);
  show(matches.reduce((best, i) => (distance(i) < distance(best) ? i : best)));
}

function show(i) {
  current = i;
  const run = ds.runs[i], base = ds.baseline === null ? null : ds.runs[ds.baseline];
  ds.params.forEach((p) => { $(p.id).value = run.settings[p.name]; });
  $("run").value = i;
  $("run-name").textContent = run.experiment;
  $("run-status").textContent = run.status;
  const same = ds.runs.filter((other) => other !== run &&
    ds.params.every((p) => other.settings[p.name] === run.settings[p.name]));
  $("run-same").textContent = same.length ?
    "Same settings: " + same.map((other) => other.experiment).join(", ") + " (pick it under Run)" : "";
  for (const [key, [value, difference]] of Object.entries(run.shown)) {
    $("metric-" + key).textContent = value;
    $("baseline-" + key).textContent = base ? base.shown[key][0] : "n/a";
    $("diff-" + key).textContent = difference;
  }
  const faint = base && base !== run ? base : null;
  const losses = [["train_loss", "train loss", "#1f77b4"], ["val_loss", "val loss", "#d62728"]];
  drawCurves("chart-loss", "Loss", losses, run, faint);
  drawCurves("chart-accuracy", "Validation " + ds.quality, [["val_accuracy", "val " + ds.quality, "#2ca02c"]],
    run, faint);
  drawScatter();
}

function drawCurves(id, title, series, run, base) {
  const lines = (curve, who, width, opacity) => series.map(([key, name, color]) =>
    ({x: curve.epoch, y: curve[key], name: who + name, mode: "lines", opacity, line: {color, width}}));
  const traces = (base ? lines(base.curve, "baseline ", 1, 0.35) : []).concat(lines(run.curve, "", 2, 1));
  Plotly.react(id, traces, {title: {text: title}, xaxis: {title: {text: "epoch"}}, margin: {t: 40}});
}

function drawParcoords() {
  const score = ds.runs.map((run) => run.score);
  const dimensions = ds.params.map((p) => ({
    label: p.name, values: ds.runs.map((run) => p.values.indexOf(run.settings[p.name])),
    tickvals: p.values.map((value, i) => i), ticktext: p.values,
  }));
  dimensions.push({label: ds.metric, values: score});
  Plotly.react("chart-parcoords",
    [{type: "parcoords", dimensions, line: {color: score, colorscale: "Viridis", showscale: true}}],
    {title: {text: "Every finished run"}, margin: {l: 60, r: 60}});
}

// every run's test accuracy (or R^2) by the chosen hyperparameter; where one-at-a-time studies changed it
// alone, the mean per value as a line, and what the summary says of it
function drawScatter() {
  const p = ds.params.find((q) => q.name === $("scatter-param").value);
  const traces = [{
    type: "scatter", mode: "markers", name: "runs", x: ds.runs.map((run) => plain(run.settings[p.name])),
    y: ds.runs.map((run) => run.score), text: ds.runs.map((run) => plain(run.experiment)),
    customdata: ds.runs.map((run, i) => i), hovertemplate: "%{text}: %{y:.3f}<extra></extra>",
    marker: {size: ds.runs.map((run, i) => (i === current ? 15 : 9)),
             color: ds.runs.map((run) => (run.status === "ok" ? "#1f77b4" : "#d62728"))},
  }];
  if (p.alone) {
    traces.push({
      type: "scatter", mode: "lines+markers", name: "changed alone (mean)", x: p.alone.values.map(plain),
      y: p.alone.accuracies, hovertemplate: "%{x}: %{y:.3f} (mean)<extra></extra>",
      line: {color: "grey", dash: "dot"}, marker: {symbol: "diamond", color: "grey"},
    });
  }
  $("scatter-note").textContent = p.alone ? p.alone.sentence : "";
  const chance = ds.chance === null ? [] : [{type: "line", xref: "paper", x0: 0, x1: 1,
    y0: ds.chance, y1: ds.chance, line: {dash: "dash", color: "grey"}}];
  Plotly.react("chart-scatter", traces, {
    title: {text: plain(ds.metric[0].toUpperCase() + ds.metric.slice(1)) + " by " + plain(p.name) +
      " (click a point to show its run)"},
    xaxis: {title: {text: plain(p.name)}, type: "category", categoryorder: "array",
            categoryarray: p.values.map(plain)},
    yaxis: {title: {text: plain(ds.metric) + " (dashed: chance)"}}, margin: {t: 40}, shapes: chance,
  });
}

fill($("dataset"), Object.keys(DATA.datasets), Object.keys(DATA.datasets));
$("dataset").onchange = chooseDataset;
$("run").onchange = () => show(Number($("run").value));
$("scatter-param").onchange = drawScatter;
chooseDataset();
$("chart-scatter").on("plotly_click", (event) => {
  const point = event.points[0];
  if (point.curveNumber === 0) show(point.customdata);
});

// the search studies: one study on one dataset at a time, from the same numbers as the report's figures
function chooseSearch() {
  const search = DATA.searches[Number($("search").value)], trials = search.trials;
  $("search-notes").replaceChildren(...search.sentences.map((sentence) => {
    const item = document.createElement("li");
    item.textContent = sentence;
    return item;
  }));
  const names = trials.experiment.map(plain), objective = plain(search.objective);
  const progress = (id, x, title) => Plotly.react(id, search.ordered ? [
    {x, y: trials.best_so_far, name: "best so far", mode: "lines", line: {shape: "hv"}},
    {x, y: trials.value, name: "each trial", mode: "markers", text: names, opacity: 0.5,
     hovertemplate: "%{text}: %{y:.3f}<extra></extra>"},
  ] : [], {title: {text: search.ordered ? title : "A grid: its runs have no order"}, xaxis: {title: {text: title.split(", by ")[1]}}, yaxis: {title: {text: objective}},
      margin: {t: 40}});
  progress("chart-progress", trials.position, "Best so far, by trials");
  progress("chart-compute", trials.compute, "Best so far, by compute (training seconds, summed)");
  Plotly.react("chart-importance", search.importance.map((one) => ({
    type: "bar", orientation: "h", name: plain(one.evaluator), y: one.names.map(plain), x: one.importance,
    error_x: {type: "data", symmetric: false, array: one.high.map((h, i) => h - one.importance[i]),
              arrayminus: one.low.map((l, i) => one.importance[i] - l)},
  })), {title: {text: search.importance.length ? "Importance, bootstrap 95 % intervals" :
    "Importance: too few runs or hyperparameters"}, xaxis: {range: [0, 1]},
    yaxis: {autorange: "reversed"}, margin: {t: 40, l: 140}});
  const contour = search.contour;
  Plotly.react("chart-contour", contour ? [
    {type: "contour", x: contour.xs, y: contour.ys, z: contour.z, colorscale: "Viridis",
     colorbar: {title: {text: objective}}},
    {type: "scatter", mode: "markers", x: contour.x.positions, y: contour.y.positions, text: names,
     marker: {color: "white", line: {color: "black", width: 1}}, hovertemplate: "%{text}<extra></extra>"},
  ] : [], {title: {text: "The two most important hyperparameters"}, showlegend: false, margin: {t: 40},
    xaxis: contour ? {title: {text: plain(contour.x.name)}, tickvals: contour.x.ticks,
                      ticktext: contour.x.labels.map(plain)} : {},
    yaxis: contour ? {title: {text: plain(contour.y.name)}, tickvals: contour.y.ticks,
                      ticktext: contour.y.labels.map(plain)} : {}});
  const dimensions = search.params.map((p) => ({label: p.name, values: p.positions, tickvals: p.ticks,
    ticktext: p.labels}));
  dimensions.push({label: search.objective, values: trials.value});
  Plotly.react("chart-search-parcoords",
    [{type: "parcoords", dimensions, line: {color: trials.value, colorscale: "Viridis", showscale: true}}],
    {title: {text: "Every trial"}, margin: {l: 60, r: 60}});
}

if (DATA.searches.length) {
  $("searches").hidden = false;
  fill($("search"), DATA.searches.map((s, i) => i), DATA.searches.map((s) => s.label));
  $("search").onchange = chooseSearch;
  chooseSearch();
}
