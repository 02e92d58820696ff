// The audit console: batches, their jobs, and each job's evidence chain, read from the
// same JSON API as every other client, with the same API key (kept for this browser
// session only). No framework and no build step: one file the API serves as it is.
"use strict";

const KEY_STORAGE = "agr-api-key";
const ENDED = new Set(["completed", "cancelled", "expired", "failed"]);
const JOB_STATUSES = ["queued", "in_progress", "succeeded", "errored", "cancelled", "expired"];
let refreshTimer = null;

class KeyRefused extends Error {}

// --- small helpers -------------------------------------------------------------------

/** An element: h("a", {href: "#", class: "x", onclick: f}, "text", child, ...). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "style") Object.assign(el.style, value);
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace an element's children, skipping empty ones and flattening lists, as h() does. */
function fill(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

const view = () => document.getElementById("view");
const show = (...nodes) => fill(view(), ...nodes);
const fmtTime = (iso) => (iso ? new Date(iso).toLocaleString() : "—");
const fmtSeconds = (s) => `${Number(s).toFixed(2)} s`;
const pct = (x) => (x === null || x === undefined ? "—" : `${(100 * x).toFixed(1)}%`);
const badge = (status) => h("span", {class: `badge ${status}`}, status);
const pretty = (value) => h("pre", {}, typeof value === "string" ? value : JSON.stringify(value, null, 2));

const withKey = (key) => ({headers: {Authorization: `Bearer ${key}`}});

async function api(path) {
  const response = await fetch(path, withKey(sessionStorage.getItem(KEY_STORAGE)));
  if (response.status === 401) {
    sessionStorage.removeItem(KEY_STORAGE);
    showKeyForm("That API key was refused; enter a valid one.");
    throw new KeyRefused();
  }
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status} ${await response.text()}`);
  return response;
}
const getJson = async (path) => (await api(path)).json();

/** Fetch with the key, then hand the browser the file to save. */
async function download(path, filename) {
  const blob = await (await api(path)).blob();
  const link = h("a", {href: URL.createObjectURL(blob), download: filename});
  link.click();
  URL.revokeObjectURL(link.href);
}

// --- routing -------------------------------------------------------------------------

async function route() {
  clearInterval(refreshTimer);
  const signedIn = Boolean(sessionStorage.getItem(KEY_STORAGE));
  document.getElementById("forget-key").hidden = !signedIn;
  if (!signedIn) return showKeyForm();
  const [, page, id] = location.hash.split("/");
  try {
    if (page === "batch" && id) await batchPage(id);
    else if (page === "job" && id) await jobPage(id);
    else await batchesPage();
  } catch (error) {
    if (!(error instanceof KeyRefused)) show(h("p", {class: "error"}, error.message));
  }
}

function showKeyForm(message) {
  document.getElementById("forget-key").hidden = true;
  const input = h("input", {type: "password", name: "key", placeholder: "agr_…", autocomplete: "off", required: true});
  const problem = h("p", {class: "error"}, message || "");
  const form = h("form", {class: "key", onsubmit: async (event) => {
    event.preventDefault();
    const probe = await fetch("/v1/batches?limit=1", withKey(input.value.trim()));
    if (probe.status === 401) { problem.textContent = "That API key was refused."; return; }
    sessionStorage.setItem(KEY_STORAGE, input.value.trim());
    route();
  }},
    h("h1", {}, "Enter your API key"),
    h("p", {class: "muted"}, "Made by `agr keys create`. It stays in this browser tab until you close it."),
    input, h("button", {type: "submit"}, "Open the console"), problem);
  show(form);
  input.focus();
}

// --- batches ---------------------------------------------------------------------------

function ended(counts) {
  return counts.completed + counts.failed + counts.cancelled + counts.expired;
}

function progressBar(counts) {
  const share = counts.total ? ended(counts) / counts.total : 0;
  return h("span", {class: "progress", title: `${ended(counts)} of ${counts.total} ended`},
    h("span", {style: {width: `${(100 * share).toFixed(1)}%`}}));
}

function countsText(c) {
  return `${ended(c)}/${c.total} ended · ${c.completed} succeeded · ${c.failed} errored · ` +
         `${c.in_progress} running · ${c.queued} queued` +
         (c.cancelled ? ` · ${c.cancelled} cancelled` : "") + (c.expired ? ` · ${c.expired} expired` : "");
}

async function batchesPage() {
  const render = async () => {
    const list = await getJson("/v1/batches?limit=100&view=native");
    const rows = list.data.map((b) => h("tr", {"data-batch": b.id},
      h("td", {}, h("a", {href: `#/batch/${b.id}`}, b.name || b.id)),
      h("td", {}, fmtTime(b.created_at)), h("td", {}, b.pipeline), h("td", {}, badge(b.status)),
      h("td", {}, progressBar(b.request_counts), " ", h("span", {class: "muted counts"}, countsText(b.request_counts)))));
    show(h("h1", {}, "Batches"),
      rows.length ? h("table", {id: "batches"},
        h("thead", {}, h("tr", {}, ["batch", "created", "pipeline", "status", "progress"].map((t) => h("th", {}, t)))),
        h("tbody", {}, rows))
        : h("p", {class: "muted"}, "No batches yet for this key's tenant: submit one with `agr submit`."));
    return list.data.some((b) => !ENDED.has(b.status));
  };
  if (await render()) refreshTimer = setInterval(() => render().catch(() => {}), 2000);
}

// --- one batch -------------------------------------------------------------------------

async function batchPage(batchId) {
  const filters = {status: "", correctness: "", search: ""};
  let jobs = [];
  let hasMore = false;

  const loadJobs = async (after) => {
    const query = new URLSearchParams({limit: "500"});
    if (filters.status) query.set("status", filters.status);
    if (after) query.set("after", after);
    const page = await getJson(`/v1/batches/${batchId}/jobs?${query}`);
    jobs = after ? jobs.concat(page.data) : page.data;
    hasMore = page.has_more;
  };
  const header = h("section", {});
  const accuracy = h("section", {});
  const table = h("section", {});

  const renderHeader = (batch) => fill(header,
    h("h1", {}, batch.name || batch.id, " ", badge(batch.status)),
    h("p", {}, progressBar(batch.request_counts), " ", h("span", {class: "counts"}, countsText(batch.request_counts))),
    h("p", {class: "muted"}, `pipeline ${batch.pipeline} · created ${fmtTime(batch.created_at)}` +
      (batch.expires_at ? ` · expires ${fmtTime(batch.expires_at)}` : "")),
    h("p", {},
      h("button", {type: "button", onclick: () => download(batch.output_file, `${batch.id}-output.jsonl`)}, "download output"), " ",
      h("button", {type: "button", onclick: () => download(batch.error_file, `${batch.id}-errors.jsonl`)}, "download errors")));

  const renderAccuracy = (score) => {
    const groups = Object.entries(score.by_group).filter(([name]) => ["modality", "category"].includes(name));
    fill(accuracy,
      h("h2", {}, "Accuracy"),
      score.overall.total ? h("p", {id: "accuracy-overall"},
        `${score.overall.correct} correct of ${score.overall.scored} answered (official ${pct(score.overall.official)}); ` +
        `strict ${pct(score.overall.strict)} of ${score.overall.total}`)
        : h("p", {class: "muted"}, "No reference answers in this batch: nothing to score."),
      groups.map(([name, values]) => h("table", {class: "accuracy", "data-group": name},
        h("thead", {}, h("tr", {}, [name, "correct", "answered", "official", "strict"].map((t) => h("th", {}, t)))),
        h("tbody", {}, Object.entries(values).map(([value, acc]) => h("tr", {},
          h("td", {}, value), h("td", {}, acc.correct), h("td", {}, `${acc.scored}/${acc.total}`),
          h("td", {}, pct(acc.official)), h("td", {}, pct(acc.strict))))))));
  };

  const renderTable = () => {
    const needle = filters.search.toLowerCase();
    const shown = jobs.filter((j) =>
      (filters.correctness === "" || String(j.correct) === filters.correctness) &&
      (!needle || [j.custom_id, j.question, j.answer, j.reference_answer].some((t) => (t || "").toLowerCase().includes(needle))));
    const mark = (j) => (j.correct === true ? h("span", {class: "good"}, "✓ correct")
      : j.correct === false ? h("span", {class: "bad"}, "✗ wrong") : h("span", {class: "muted"}, "—"));
    fill(table,
      h("table", {id: "jobs"},
        h("thead", {}, h("tr", {}, ["item", "status", "answer", "reference", "correct", "error"].map((t) => h("th", {}, t)))),
        h("tbody", {}, shown.map((j) => h("tr", {"data-job": j.id},
          h("td", {}, h("a", {href: `#/job/${j.id}`}, j.custom_id)), h("td", {}, badge(j.status)),
          h("td", {}, j.answer ?? (j.raw_answer ? `unmapped: ${j.raw_answer}` : "—")),
          h("td", {}, j.reference_answer ?? "—"), h("td", {}, mark(j)),
          h("td", {class: "error"}, (j.error || "").slice(0, 200)))))),
      h("p", {class: "muted"}, `${shown.length} of ${jobs.length} loaded item(s) shown`),
      hasMore ? h("button", {type: "button", onclick: async () => {
        await loadJobs(jobs[jobs.length - 1].custom_id); renderTable();
      }}, "load more") : null);
  };

  const select = (name, options) => h("select", {name, onchange: async (event) => {
    filters[name] = event.target.value;
    if (name === "status") await loadJobs();
    renderTable();
  }}, options.map(([value, label]) => h("option", {value}, label)));

  const refresh = async () => {
    const [batch, score] = await Promise.all([getJson(`/v1/batches/${batchId}?view=native`), getJson(`/v1/batches/${batchId}/score`)]);
    renderHeader(batch);
    renderAccuracy(score);
    await loadJobs();
    renderTable();
    return ENDED.has(batch.status);
  };

  show(h("p", {}, h("a", {href: "#/batches"}, "← all batches")), header, accuracy,
    h("h2", {}, "Items"),
    h("div", {class: "filters"},
      h("label", {}, "status ", select("status", [["", "any"], ...JOB_STATUSES.map((s) => [s, s])])),
      h("label", {}, "answer ", select("correctness", [["", "any"], ["true", "correct"], ["false", "wrong"], ["null", "not scored"]])),
      h("label", {}, "search ", h("input", {type: "search", name: "search", oninput: (event) => {
        filters.search = event.target.value; renderTable();
      }}))),
    table);
  if (!(await refresh())) refreshTimer = setInterval(() => refresh().catch(() => {}), 3000);
}

// --- one job -------------------------------------------------------------------------

async function jobPage(jobId) {
  const chain = await getJson(`/v1/jobs/${jobId}/evidence`);
  const job = chain.job;
  const player = audioPlayer();
  show(
    h("p", {}, h("a", {href: `#/batch/${job.batch_id}`}, "← its batch")),
    h("h1", {}, job.custom_id, " ", badge(job.status)),
    answerSummary(job),
    h("h2", {}, "Audio and its evidence over time"), player.element,
    h("h2", {}, "How the answer was reached"),
    h("div", {class: "cards", id: "iterations"},
      chain.iterations.map((it, n) => iterationCard(it, n ? chain.iterations[n - 1] : null, player)),
      finalCard(job)),
    h("h2", {}, "Steps"), stepsTable(chain.steps));
  await player.load(`/v1/jobs/${jobId}/audio`, timelineLanes(chain.iterations));
}

function answerSummary(job) {
  const verdict = job.correct === true ? h("span", {class: "good", id: "verdict"}, "✓ correct")
    : job.correct === false ? h("span", {class: "bad", id: "verdict"}, "✗ wrong") : null;
  return h("section", {},
    h("p", {}, h("strong", {}, "Question: "), job.question),
    h("ul", {class: "choices"}, job.choices.map((c) => h("li", {
      class: [c === job.answer ? "chosen" : "", c === job.reference_answer ? "reference" : ""].join(" ").trim() || null,
    }, c))),
    h("p", {}, h("strong", {}, "Answer: "), job.answer ?? (job.normalisation === "unmapped" ? `unmapped (${job.raw_answer})` : "—"),
      job.reference_answer ? [" · reference: ", job.reference_answer, " "] : " ", verdict),
    job.error ? h("p", {class: "error"}, job.error) : null);
}

function iterationCard(it, previous, player) {
  const finalListening = it.index > 0 && it.tool_calls.length > 0
    && it.tool_calls.every((c) => c.args && c.args.evidence !== undefined);
  const title = it.index === 0 ? "Round 0 · the coarse document"
    : finalListening ? `Round ${it.index} · final listening (the audio model answers with the evidence)`
    : `Round ${it.index} · refinement`;
  return h("article", {class: "card iteration", "data-iteration": it.index},
    h("h3", {}, title),
    h("h4", {}, `Perception: ${it.tool_calls.length} tool call(s)`), toolCallsTable(it.tool_calls, player, it.evidence || [], it.index),
    h("h4", {}, it.index === 0 ? "Document" : "What this round changed in the document"),
    documentDiff(previous ? previous.document : "", it.document || ""),
    it.verdict ? verdictBlock(it.verdict) : h("p", {class: "muted"}, "not judged yet"),
    it.tool_plan && it.tool_plan.length ? h("div", {},
      h("h4", {}, "Interaction agent asked for"),
      h("ul", {}, it.tool_plan.map((call) => h("li", {}, `${call.tool} ${JSON.stringify(call.args || {})}`,
        call.purpose ? h("span", {class: "muted"}, ` — ${call.purpose}`) : null)))) : null,
    h("h4", {}, `LLM calls: ${it.llm_calls.length}`), it.llm_calls.map(llmCallBlock));
}

function toolCallsTable(calls, player, evidence, round) {
  // Each call's evidence item (E<round>.<index+1>) carries its source kind and trust.
  const items = Object.fromEntries(evidence.map((e) => [e.id, e]));
  return h("table", {class: "tool-calls"},
    h("thead", {}, h("tr", {}, ["tool", "source · trust", "args", "where", "latency", "output"].map((t) => h("th", {}, t)))),
    h("tbody", {}, calls.map((call) => h("tr", {"data-tool": call.tool},
      h("td", {}, call.tool, h("div", {class: "muted"}, call.model)),
      trustCell(items[`E${round}.${call.index + 1}`]),
      h("td", {}, windowLink(call.args, player), h("pre", {}, JSON.stringify(call.args))),
      h("td", {}, call.device,
        call.cache_hit ? h("div", {class: "muted"}, "cached result") : null),
      h("td", {}, call.latency_ms === null ? "shared pass" : `${call.latency_ms} ms`),
      h("td", {}, call.error ? h("p", {class: "error"}, call.error) : pretty(call.text),
        h("details", {}, h("summary", {}, "structured output"), pretty(call.output)))))));
}

function trustCell(item) {
  if (!item || !item.source) return h("td", {class: "muted"}, "—");
  return h("td", {class: "trust", "data-source": item.source}, item.source, " · ", Number(item.trust).toFixed(2));
}

function windowLink(args, player) {
  if (!args || args.start === undefined) return null;
  const end = args.end ?? null;
  return h("button", {type: "button", class: "play-window", onclick: () => player.play(args.start, end)},
    `▶ ${fmtSeconds(args.start)}–${end === null ? "end" : fmtSeconds(end)}`);
}

function verdictBlock(v) {
  return h("div", {class: "verdict"},
    h("h4", {}, "Planning agent's verdict"),
    h("p", {}, v.sufficient ? h("span", {class: "good"}, "sufficient") : h("span", {class: "bad"}, "not sufficient"),
      ` · confidence ${v.confidence ?? "—"}`, v.final ? " · the loop stops here" : ""),
    v.reason ? h("p", {}, v.reason) : null,
    v.missing && v.missing.length ? h("p", {}, "Missing: ", v.missing.join("; ")) : null,
    v.agreement ? agreementBlock(v) : null);
}

function agreementBlock(v) {
  const answers = Object.entries(v.agreement.answers || {});
  const gate = v.gate === "agreement" ? h("p", {class: "good"}, `Gate: the audio models agree on “${v.gated_answer}”, and the planner found the evidence sufficient: answered without further rounds`)
    : v.gate === "disagreement" ? h("p", {class: "bad"}, "Gate: the audio models disagree: sent to the interaction agent to resolve before answering")
    : h("p", {class: "muted"}, "Gate: no agreement to act on");
  return h("div", {class: "agreement", "data-gate": v.gate || "none"},
    h("h4", {}, "Audio models' own answers"),
    h("ul", {}, answers.map(([tool, answer]) => h("li", {}, `${tool}: `, answer ?? h("span", {class: "muted"}, "no choice named")))),
    gate);
}

function llmCallBlock(call) {
  return h("details", {class: "llm-call", "data-agent": call.agent},
    h("summary", {}, `${call.agent} · ${call.model} · ${call.prompt_tokens ?? "?"} + ${call.completion_tokens ?? "?"} tokens · ${call.latency_ms} ms`),
    (call.messages || []).map((m) => h("div", {}, h("strong", {}, m.role), pretty(m.content))),
    h("div", {}, h("strong", {}, "reply"), pretty(call.reply)));
}

function finalCard(job) {
  return h("article", {class: "card final"},
    h("h3", {}, "Answer"),
    h("p", {}, job.answer ?? "no answer", job.confidence !== null ? h("span", {class: "muted"}, ` (confidence ${job.confidence})`) : null),
    job.reference_answer ? h("p", {}, "Correct answer: ", job.reference_answer, " ",
      job.correct === true ? h("span", {class: "good"}, "✓") : job.correct === false ? h("span", {class: "bad"}, "✗") : null) : null,
    job.reasoning ? h("p", {}, job.reasoning) : null,
    job.vote ? voteBlock(job.vote) : null,
    job.decision ? decisionBlock(job.decision) : null);
}

function voteBlock(vote) {
  return h("div", {class: "vote"},
    h("h4", {}, `Self-consistency: ${vote.samples} samples, margin ${vote.margin}`),
    h("ul", {}, vote.votes.map((v) => h("li", {}, `${v.answer ?? "unmapped"}: ${v.votes} vote(s)`))),
    vote.dissent.length ? h("p", {class: "muted"}, "Dissent: ", vote.dissent.map((d) => `sample ${d.sample + 1}: ${d.answer ?? d.raw_answer}`).join("; ")) : null);
}

function decisionBlock(d) {
  const how = {agreement_gate: "the audio models' agreement", text_side: "the text-side answer", arbiter: "the arbiter"}[d.by] || d.by;
  return h("div", {class: "decision", "data-by": d.by},
    h("h4", {}, `Decided by ${how}`),
    d.text_answer !== undefined ? h("p", {}, `Text side: ${d.text_answer ?? "—"} · audio model (${d.audio_tool}, ${d.audio_item}): ${d.audio_answer ?? "no choice named"}`) : null,
    d.why ? h("p", {class: "muted"}, d.why) : null,
    d.arbiter_reasoning ? h("p", {}, "Arbiter: ", d.arbiter_reasoning) : null);
}

function stepsTable(steps) {
  const seconds = (s) => (s.finished_at ? ((new Date(s.finished_at) - new Date(s.created_at)) / 1000).toFixed(2) : "—");
  return h("table", {class: "steps"},
    h("thead", {}, h("tr", {}, ["round", "step", "status", "attempts", "queued at", "took (s)", "last error"].map((t) => h("th", {}, t)))),
    h("tbody", {}, steps.map((s) => h("tr", {},
      h("td", {}, s.iteration), h("td", {}, s.kind), h("td", {}, s.status), h("td", {}, s.attempts),
      h("td", {}, fmtTime(s.created_at)), h("td", {}, seconds(s)), h("td", {class: "error"}, s.last_error || "")))));
}

/** Line diff (longest common subsequence): what a round added to the document, and removed. */
function documentDiff(before, after) {
  const a = before ? before.split("\n") : [];
  const b = after.split("\n");
  const lcs = Array.from({length: a.length + 1}, () => new Array(b.length + 1).fill(0));
  for (let i = a.length - 1; i >= 0; i--)
    for (let j = b.length - 1; j >= 0; j--)
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const lines = [];
  let i = 0, j = 0;
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) { lines.push(["same", a[i]]); i++; j++; }
    else if (j < b.length && (i === a.length || lcs[i][j + 1] >= lcs[i + 1][j])) lines.push(["added", b[j++]]);
    else lines.push(["removed", a[i++]]);
  }
  return h("div", {class: "diff"}, lines.map(([kind, text]) => h("div", {class: kind}, `${{added: "+ ", removed: "− ", same: "  "}[kind]}${text}`)));
}

// --- the audio player, its waveform and the evidence timeline ---------------------------

/** Evidence with a place in time, from every round's tool calls, by kind. */
function timelineLanes(iterations) {
  const lanes = new Map();
  for (const it of iterations) {
    // A refinement round's evidence gets lanes of its own, so it never hides the coarse one.
    const add = (lane, item) => {
      const name = it.index ? `${lane} · round ${it.index}` : lane;
      if (!lanes.has(name)) lanes.set(name, []);
      lanes.get(name).push(item);
    };
    for (const call of it.tool_calls) {
      const out = call.output || {};
      const from = `round ${it.index}, ${call.tool}`;
      if (call.tool === "transcription")
        (out.segments || []).forEach((s) => add("speech (ASR)", {start: s.start, end: s.end, label: s.text, from}));
      if (call.tool === "voice_activity")
        (out.segments || []).forEach((s) => add("speech activity", {start: s.start, end: s.end, label: "speech", from}));
      if (call.tool === "sound_events")
        (out.events || []).filter((e) => e.max_score >= 0.3)
          .forEach((e) => add("sound events", {start: e.start, end: e.end, label: e.label, from}));
      if (call.tool === "speakers")
        (out.turns || []).forEach((t) => add("speakers", {start: t.start, end: t.end, label: t.speaker, from}));
      if (call.tool === "music") {
        ((out.tempo || {}).beat_times || []).forEach((t) => add("beats", {start: t, end: null, label: "beat", from}));
        (out.bursts || []).forEach((b) => add("sound bursts", {start: b.start, end: b.end, label: "", from}));
      }
      if (it.index > 0 && call.args && call.args.start !== undefined)
        add("re-listened", {start: call.args.start, end: call.args.end ?? null, label: call.tool, from});
    }
  }
  return lanes;
}

function audioPlayer() {
  const canvas = h("canvas", {width: 1000, height: 90});
  const audio = h("audio", {controls: true, preload: "auto"});
  const playhead = h("div", {class: "playhead", style: {left: "0%"}});
  const timeline = h("div", {class: "timeline", id: "timeline"});
  const status = h("p", {class: "muted"});
  const element = h("section", {class: "player"},
    h("div", {style: {position: "relative", marginLeft: "9rem"}}, canvas, playhead), audio, status, timeline);
  let duration = 0;
  let stopAt = null;

  audio.addEventListener("timeupdate", () => {
    if (duration) playhead.style.left = `${(100 * audio.currentTime / duration).toFixed(2)}%`;
    if (stopAt !== null && audio.currentTime >= stopAt) { audio.pause(); stopAt = null; }
  });

  async function load(url, lanes) {
    let bytes;
    try {
      bytes = await (await api(url)).arrayBuffer();
    } catch (error) {
      if (error instanceof KeyRefused) throw error;
      status.textContent = `The audio cannot be played here: ${error.message}`;
    }
    if (bytes) {
      audio.src = URL.createObjectURL(new Blob([bytes]));
      try {
        const decoded = await new OfflineAudioContext(1, 1, 8000).decodeAudioData(bytes.slice(0));
        duration = decoded.duration;
        drawWaveform(canvas, decoded.getChannelData(0));
      } catch (error) {
        status.textContent = "This browser cannot decode the file for a waveform; the timeline still shows its evidence.";
      }
    }
    if (!duration) duration = Math.max(1, ...[...lanes.values()].flat().map((i) => i.end ?? i.start));
    status.textContent ||= `${fmtSeconds(duration)} · click any evidence below to hear that span`;
    drawTimeline(lanes);
  }

  function drawTimeline(lanes) {
    if (!lanes.size) { fill(timeline, h("p", {class: "muted"}, "No tool placed evidence in time.")); return; }
    const at = (t) => `${(100 * Math.min(t, duration) / duration).toFixed(3)}%`;
    fill(timeline, ...[...lanes.entries()].map(([name, items]) => h("div", {class: "lane", "data-lane": name},
      h("span", {class: "lane-name"}, name),
      h("div", {class: "lane-track"}, items.map((item) => {
        const span = h("span", {
          class: item.end === null ? "span point" : "span", title: `${item.label} · ${fmtSeconds(item.start)}` +
            (item.end === null ? "" : `–${fmtSeconds(item.end)}`) + ` · ${item.from}`,
          "data-start": item.start, "data-end": item.end ?? "",
          style: {left: at(item.start), width: item.end === null ? null : `calc(${at(item.end - item.start)} + 1px)`},
          onclick: () => {
            timeline.querySelectorAll(".span.playing").forEach((s) => s.classList.remove("playing"));
            span.classList.add("playing");
            play(item.start, item.end ?? item.start + 0.5);
          },
        }, item.end === null ? "" : item.label);
        return span;
      })))));
  }

  function play(start, end) {
    audio.currentTime = start;
    stopAt = end;
    return audio.play().catch((error) => { status.textContent = `Playback refused by the browser: ${error.message}`; });
  }

  return {element, load, play};
}

function drawWaveform(canvas, samples) {
  const context = canvas.getContext("2d");
  const {width, height} = canvas;
  const perColumn = Math.max(1, Math.floor(samples.length / width));
  context.clearRect(0, 0, width, height);
  context.fillStyle = "#2856c9";
  for (let x = 0; x < width; x++) {
    let low = 0, high = 0;
    for (let i = x * perColumn; i < Math.min(samples.length, (x + 1) * perColumn); i++) {
      if (samples[i] < low) low = samples[i];
      if (samples[i] > high) high = samples[i];
    }
    context.fillRect(x, (1 - high) * height / 2, 1, Math.max(1, (high - low) * height / 2));
  }
}

document.getElementById("forget-key").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_STORAGE);
  route();
});
window.addEventListener("hashchange", route);
route();
