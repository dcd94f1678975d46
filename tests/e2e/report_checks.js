// Measures the rendered report (tests/e2e/test_report_browser.py evaluates this in headless Chromium).
// Returns problems per check (empty lists when the page is right) and what Python checks itself.
(() => {
  const out = {legend: [], overlap: [], width: [], first: [], budget: [], charts: {}, latency: [], summary: {}};
  const visible = (el) => {
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && getComputedStyle(el).visibility !== "hidden";
  };
  const name = (el) => (el.textContent || "").trim().slice(0, 60);
  const slack = 0.5;

  // Legend: each key's swatch has the colour of what it names, and the keys of one chart differ in colour.
  // The report at 1aad91a drew its legend as SVG text (a square glyph) beside the i-th line: checked too.
  for (const fig of document.querySelectorAll("figure")) {
    const title = name(fig.querySelector("figcaption") || fig);
    const keys = [...fig.querySelectorAll(".legend .key")];
    const drawn = fig.querySelectorAll("svg polyline, svg circle, svg rect");
    if (keys.length) {
      const colours = new Set();
      for (const key of keys) {
        const swatch = key.querySelector(".swatch");
        const cs = getComputedStyle(swatch);
        const colour = swatch.classList.contains("ref") ? cs.borderTopColor : cs.backgroundColor;
        colours.add(colour);
        const elements = fig.querySelectorAll(`svg [data-key="${key.dataset.key}"]`);
        if (!elements.length) out.legend.push(`${title}: key "${name(key)}" names nothing drawn`);
        for (const el of elements) {
          const s = getComputedStyle(el);
          const drawnColour = s.stroke && s.stroke !== "none" ? s.stroke : s.fill;
          if (drawnColour !== colour) out.legend.push(`${title}: "${name(key)}" swatch ${colour}, drawn ${drawnColour}`);
        }
      }
      if (colours.size < keys.length) out.legend.push(`${title}: ${keys.length} keys share ${colours.size} colours`);
    } else {
      const old = [...fig.querySelectorAll("svg text.legend")];
      const lines = [...fig.querySelectorAll("svg polyline, svg circle")];
      old.forEach((t, i) => {
        const line = lines[i];
        const colour = getComputedStyle(t).fill;
        const drawnColour = line ? getComputedStyle(line).stroke : "nothing";
        if (colour !== drawnColour) out.legend.push(`${title}: "${name(t)}" swatch ${colour}, drawn ${drawnColour}`);
      });
      if (drawn.length && !old.length) out.legend.push(`${title}: no legend`);
    }
  }

  // Text: no box overlaps another in the same chart, none leaves its svg.
  for (const fig of document.querySelectorAll("figure")) {
    const title = name(fig.querySelector("figcaption") || fig);
    const texts = [...fig.querySelectorAll("svg text")].filter(visible);
    for (const t of texts) {
      const r = t.getBoundingClientRect(), s = t.ownerSVGElement.getBoundingClientRect();
      if (r.left < s.left - slack || r.right > s.right + slack || r.top < s.top - slack || r.bottom > s.bottom + slack)
        out.overlap.push(`${title}: "${name(t)}" leaves its chart`);
    }
    for (let i = 0; i < texts.length; i++) {
      const a = texts[i].getBoundingClientRect();
      for (let j = i + 1; j < texts.length; j++) {
        const b = texts[j].getBoundingClientRect();
        const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
        const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
        if (w > 1 && h > 1) out.overlap.push(`${title}: "${name(texts[i])}" overlaps "${name(texts[j])}"`);
      }
    }
  }

  // Width: nothing reaches past the viewport, except inside a container that scrolls sideways on purpose.
  const vw = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth > vw + slack)
    out.width.push(`the page is ${document.documentElement.scrollWidth} px wide in a ${vw} px viewport`);
  for (const el of document.body.querySelectorAll("*")) {
    if (el.closest(".scroll") || !visible(el)) continue;
    const r = el.getBoundingClientRect();
    if (r.right > vw + slack) out.width.push(`<${el.tagName.toLowerCase()}> "${name(el)}" ends at ${r.right} px > ${vw}`);
  }
  out.width = out.width.slice(0, 20);

  // The summary first: right after the title, on the first screen.
  const blocks = [...document.body.children].filter(visible);
  const summary = document.querySelector(".summary");
  if (!summary) out.first.push("no summary");
  else {
    if (blocks[1] !== summary) out.first.push(`the second block is <${blocks[1].tagName.toLowerCase()}> "${name(blocks[1])}"`);
    if (summary.getBoundingClientRect().top > window.innerHeight) out.first.push("the summary starts below the first screen");
  }
  if (summary) {
    for (const slo of summary.querySelectorAll(".slo")) {
      out.summary[slo.dataset.slo] = {
        status: slo.dataset.status,
        label: name(slo.querySelector(".badge")),
        badgeColour: getComputedStyle(slo.querySelector(".badge")).color,
        tiers: [...slo.querySelectorAll("li[data-tier]")].map((li) => li.dataset.tier),
        text: slo.textContent,
        links: [...slo.querySelectorAll("a")].map((a) => a.getAttribute("href")),
      };
    }
  }

  // Per SLO (an h3 and the figures after it): the text of every chart, and the dashed lines drawn.
  for (const h3 of document.querySelectorAll("h3")) {
    const figs = [];
    for (let el = h3.nextElementSibling; el && el.tagName !== "H3" && el.tagName !== "H2"; el = el.nextElementSibling)
      if (el.tagName === "FIGURE") figs.push(el);
    out.charts[name(h3)] = figs.map((f) => ({
      title: name(f.querySelector("figcaption")),
      keys: [...f.querySelectorAll(".legend .key"), ...f.querySelectorAll("svg text")].map(name),
      dashed: [...f.querySelectorAll("svg line")].filter((l) => getComputedStyle(l).strokeDasharray !== "none").length,
      yTicks: [...f.querySelectorAll("svg.yaxis text, svg text[text-anchor=end]")].map(name),
    }));
  }
  for (const fig of document.querySelectorAll("figure")) {
    const title = name(fig.querySelector("figcaption"));
    if (!/budget/.test(title)) continue;
    for (const t of fig.querySelectorAll("svg.yaxis text"))
      if (!/%$/.test(name(t))) out.budget.push(`${title}: y tick "${name(t)}" is not a percentage`);
    if (!fig.querySelector("svg.yaxis")) out.budget.push(`${title}: no percentage axis`);
  }

  // Latency: the y tick labels and their vertical positions (Python checks the scale).
  for (const fig of document.querySelectorAll("figure")) {
    if (!/latency/.test(name(fig.querySelector("figcaption")))) continue;
    const ticks = [...fig.querySelectorAll("svg.yaxis text")];
    const old = ticks.length ? ticks : [...fig.querySelectorAll("svg text[text-anchor=end]")].filter((t) => !t.classList.contains("ref"));
    out.latency.push(old.map((t) => [name(t), (t.getBoundingClientRect().top + t.getBoundingClientRect().bottom) / 2]));
  }
  return out;
})()
