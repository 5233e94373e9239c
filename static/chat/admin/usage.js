// The usage page's charts, per day. The first: replies as stacked bars (answered, stopped, failed: the bar's
// height is every reply) and completion tokens as a line on a second axis. The second, per model: each model's
// replies as stacked bars and its completion tokens as a line of the same colour. The figures come from the
// page's json_script block (the CSP forbids inline script); colours come from CSS variables, so the charts
// follow the admin's light/dark theme, and are redrawn when the theme changes. An ES module: Chart is the
// vendored Chart.js's global (a deferred classic script before this one; deferred scripts and modules run in
// order).
import { t, fill } from "../page/i18n.js";

const MODEL_COLOURS = 6; // --usage-model-1 … --usage-model-6, then round again
const source = document.getElementById("usage-data");
if (source && typeof Chart !== "undefined") {
    const data = JSON.parse(source.textContent);
    const font = colours().font;
    if (font) Chart.defaults.font.family = font;
    const charts = [];
    const canvas = document.getElementById("usage-chart");
    if (canvas) charts.push(drawTotals(canvas, data));
    const perModel = document.getElementById("usage-models-chart");
    if (perModel) charts.push(drawModels(perModel, data));
    const repaint = () => charts.forEach((chart) => paint(chart));
    repaint();
    new MutationObserver(repaint).observe(document.documentElement, {attributes: true, attributeFilter: ["data-theme"]});
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", repaint);
}

function colours() {
    const style = getComputedStyle(document.documentElement);
    const v = (name) => style.getPropertyValue(name).trim();
    const models = [];
    for (let i = 1; i <= MODEL_COLOURS; i++) models.push(v(`--usage-model-${i}`));
    return {replies: v("--usage-replies"), failed: v("--usage-failed"), stopped: v("--usage-stopped"),
            tokens: v("--usage-tokens"), text: v("--body-quiet-color"), grid: v("--hairline-color"),
            font: v("--font-family-primary"), models};
}

function options(left, right) {
    return {
        maintainAspectRatio: false,
        animation: false,
        interaction: {mode: "index", intersect: false},
        scales: {
            x: {stacked: true},
            y: {stacked: true, beginAtZero: true, position: "left",
                title: {display: true, text: left}, ticks: {precision: 0}},
            tokens: {beginAtZero: true, position: "right", grid: {drawOnChartArea: false},
                     title: {display: true, text: right}, ticks: {precision: 0}},
        },
    };
}

function line(label, values, days) {
    return {type: "line", label, data: values, yAxisID: "tokens", order: 1, tension: 0.2,
            pointRadius: days > 62 ? 0 : 2, borderWidth: 2};
}

function drawTotals(canvas, data) {
    const answered = data.replies.map((n, i) => n - data.failed[i] - data.stopped[i]);
    const chart = new Chart(canvas, {
        data: {
            labels: data.days,
            datasets: [
                {type: "bar", label: t("replies answered"), data: answered, stack: "replies", yAxisID: "y", order: 2},
                {type: "bar", label: t("stopped"), data: data.stopped, stack: "replies", yAxisID: "y", order: 2},
                {type: "bar", label: t("failed"), data: data.failed, stack: "replies", yAxisID: "y", order: 2},
                line(t("completion tokens"), data.completion_tokens, data.days.length),
            ],
        },
        options: options(t("replies"), t("completion tokens")),
    });
    chart.colour = (c) => [c.replies, c.stopped, c.failed, c.tokens];
    return chart;
}

function drawModels(canvas, data) {
    const name = (m) => m.model || t("(no model name)");
    const bars = data.models.map((m) => ({type: "bar", label: fill(t("%(model)s: replies"), { model: name(m) }), data: m.replies,
                                          stack: "replies", yAxisID: "y", order: 2}));
    const lines = data.models.map((m) => line(fill(t("%(model)s: completion tokens"), { model: name(m) }), m.completion_tokens, data.days.length));
    const settings = options(t("replies"), t("completion tokens"));
    const n = data.models.length;
    // The legend pairs each model's two entries (bars, then its line), models in the table's order.
    settings.plugins = {legend: {labels: {sort: (a, b) => a.datasetIndex % n - b.datasetIndex % n
                                                        || a.datasetIndex - b.datasetIndex}}};
    const chart = new Chart(canvas, {data: {labels: data.days, datasets: [...bars, ...lines]}, options: settings});
    // A model's bars and line share its colour (the bars half transparent, so its line shows across them).
    const of = (c, i) => c.models[i % c.models.length];
    chart.colour = (c) => [...data.models.map((_, i) => translucent(of(c, i))), ...data.models.map((_, i) => of(c, i))];
    return chart;
}

function translucent(colour) {
    return /^#[0-9a-f]{6}$/i.test(colour) ? `${colour}80` : colour;
}

function paint(chart) {
    const c = colours();
    chart.colour(c).forEach((colour, i) => {
        const set = chart.data.datasets[i];
        if (set.type === "line") set.borderColor = colour;
        set.backgroundColor = colour;
    });
    for (const scale of Object.values(chart.options.scales)) {
        scale.ticks.color = c.text;
        scale.grid.color = c.grid;
        if (scale.title) scale.title.color = c.text;
    }
    chart.options.plugins.legend.labels.color = c.text;
    chart.update();
}
