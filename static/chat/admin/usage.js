// The usage page's chart: per day, replies as stacked bars (answered, stopped, failed: the bar's height is
// every reply) and completion tokens as a line on a second axis. The figures come from the page's
// json_script block (the CSP forbids inline script); colours come from CSS variables, so the chart follows
// the admin's light/dark theme, and is redrawn when the theme changes. An ES module: Chart is the vendored
// Chart.js's global (a deferred classic script before this one; deferred scripts and modules run in order).
const canvas = document.getElementById("usage-chart");
const source = document.getElementById("usage-data");
if (canvas && source && typeof Chart !== "undefined") draw(canvas, JSON.parse(source.textContent));

function draw(canvas, data) {
    function colours() {
        const style = getComputedStyle(document.documentElement);
        const v = (name) => style.getPropertyValue(name).trim();
        return {replies: v("--usage-replies"), failed: v("--usage-failed"), stopped: v("--usage-stopped"),
                tokens: v("--usage-tokens"), text: v("--body-quiet-color"), grid: v("--hairline-color"),
                font: v("--font-family-primary")};
    }

    const font = colours().font;
    if (font) Chart.defaults.font.family = font;
    const answered = data.replies.map((n, i) => n - data.failed[i] - data.stopped[i]);
    const chart = new Chart(canvas, {
        data: {
            labels: data.days,
            datasets: [
                {type: "bar", label: "replies answered", data: answered, stack: "replies", yAxisID: "y", order: 2},
                {type: "bar", label: "stopped", data: data.stopped, stack: "replies", yAxisID: "y", order: 2},
                {type: "bar", label: "failed", data: data.failed, stack: "replies", yAxisID: "y", order: 2},
                {type: "line", label: "completion tokens", data: data.completion_tokens, yAxisID: "tokens",
                 order: 1, tension: 0.2, pointRadius: data.days.length > 62 ? 0 : 2, borderWidth: 2},
            ],
        },
        options: {
            maintainAspectRatio: false,
            animation: false,
            interaction: {mode: "index", intersect: false},
            scales: {
                x: {stacked: true},
                y: {stacked: true, beginAtZero: true, position: "left",
                    title: {display: true, text: "replies"}, ticks: {precision: 0}},
                tokens: {beginAtZero: true, position: "right", grid: {drawOnChartArea: false},
                         title: {display: true, text: "completion tokens"}, ticks: {precision: 0}},
            },
        },
    });

    function paint() {
        const c = colours();
        const [answeredSet, stoppedSet, failedSet, tokensSet] = chart.data.datasets;
        answeredSet.backgroundColor = c.replies;
        stoppedSet.backgroundColor = c.stopped;
        failedSet.backgroundColor = c.failed;
        tokensSet.borderColor = tokensSet.backgroundColor = c.tokens;
        for (const scale of Object.values(chart.options.scales)) {
            scale.ticks.color = c.text;
            scale.grid.color = c.grid;
            if (scale.title) scale.title.color = c.text;
        }
        chart.options.plugins.legend.labels.color = c.text;
        chart.update();
    }

    paint();
    new MutationObserver(paint).observe(document.documentElement, {attributes: true, attributeFilter: ["data-theme"]});
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", paint);
}
