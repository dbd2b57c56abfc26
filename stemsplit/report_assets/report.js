"use strict";
// The listening report's player: every track is an <audio> element; the longest one is the
// master clock, the others follow it (re-aligned when more than DRIFT_LIMIT_S off).
(() => {
  const DRIFT_LIMIT_S = 0.03;
  const SYNC_INTERVAL_MS = 200;
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const $ = (id) => document.getElementById(id);
  const element = (tag, props = {}, ...children) => {
    const node = Object.assign(document.createElement(tag), props);
    node.append(...children);
    return node;
  };
  const clock = (seconds) => {
    const s = Math.max(0, seconds || 0);
    return `${Math.floor(s / 60)}:${(s % 60).toFixed(1).padStart(4, "0")}`;
  };

  // -- metadata table -------------------------------------------------------------------
  const describe = (value) => {
    if (Array.isArray(value)) return value.map(describe).join(", ");
    if (value && typeof value === "object") {
      return Object.entries(value).map(([k, v]) => `${k}=${describe(v)}`).join(", ");
    }
    return typeof value === "number" && !Number.isInteger(value) ? value.toFixed(3) : String(value);
  };
  // Each fact once: duration and rate from the audio, stems as the players below, the
  // settings one row each (unset ones left out), model files by name and short checksum.
  const shown = new Set(["duration", "stems", "settings", "model_files", "samplerate"]);
  const label = (key) => key.replaceAll("_", " ");
  const metaRows = [["duration", clock(data.duration)],
                    ["sample rate", `${data.tracks[0].samplerate} Hz`],
                    ...Object.entries(data.metadata).filter(([k]) => !shown.has(k))
                      .map(([k, v]) => [label(k), describe(v)])];
  for (const entry of data.metadata.model_files || []) {
    const files = Object.entries(entry.files || {})
      .map(([name, sha]) => `${name} (${sha ? String(sha).slice(0, 12) : "?"})`);
    metaRows.push([`files of ${entry.name}`, files.join(", ") || "–"]);
  }
  const settings = Object.entries(data.metadata.settings || {})
    .filter(([k, v]) => v !== null && v !== undefined && k !== "stems");
  for (const [label, value] of metaRows) {
    $("meta").append(element("tr", {}, element("th", { textContent: label }),
                             element("td", { textContent: value })));
  }
  if (settings.length) {
    $("meta").append(element("tr", {}, element("th", { textContent: "settings",
                                                       colSpan: 2, className: "group" })));
    for (const [key, value] of settings) {
      $("meta").append(element("tr", { className: "setting" },
                               element("th", { textContent: label(key) }),
                               element("td", { textContent: describe(value) })));
    }
  }

  // -- tracks -----------------------------------------------------------------------------
  const hasStems = data.tracks.some((t) => t.kind === "stem");
  let stemNumber = 0;
  const tracks = data.tracks.map((info) => {
    const key = info.kind === "stem" && stemNumber < 9 ? String(++stemNumber) : null;
    const audio = element("audio", { src: info.src, preload: "auto" });
    audio.dataset.track = info.name;
    const soloButton = element("button", { className: "solo", textContent: "S", title: "Solo" });
    const muteButton = element("button", { className: "mute", textContent: "M", title: "Mute" });
    const volume = element("input", { type: "range", min: 0, max: 1, step: 0.01, value: 1,
                                      title: "Volume" });
    const canvas = element("canvas");
    const image = element("img", { src: info.spectrogram, alt: `${info.name} spectrogram` });
    const playhead = element("div", { className: "playhead" });
    const lanes = element("div", { className: "lanes" }, canvas, image, playhead);
    const sdr = info.sdr == null ? "" : `SDR ${info.sdr.toFixed(2)} dB`;
    // `report --metrics`: one line per score, named as `stemsplit eval --json` names it.
    const scores = Object.entries(info.scores || {}).filter(([, value]) => value != null)
      .map(([name, value]) => `${name} ${value.toFixed(2)}`).join("\n");
    const controls = element("div", { className: "controls" },
      element("div", {}, element("span", { className: "name", textContent: info.name }),
              element("span", { className: "key", textContent: key ? `[${key}]` : "" })),
      element("div", { className: "sdr", textContent: sdr }),
      element("div", { className: "scores", textContent: scores }),
      element("div", { className: "row" }, soloButton, muteButton, volume), audio);
    const row = element("div", { className: `track ${info.kind}` }, controls, lanes);
    $("tracks").append(row);
    const track = { info, key, audio, row, soloButton, muteButton, volume, canvas, image,
                    playhead, lanes, solo: false, muted: info.kind === "mixture" && hasStems,
                    seekLead: 0, justSeeked: false };
    soloButton.addEventListener("click", () => toggleSolo(track));
    muteButton.addEventListener("click", () => toggleMute(track));
    volume.addEventListener("input", () => applyMix());
    lanes.addEventListener("click", (event) => {
      const box = lanes.getBoundingClientRect();
      seek(((event.clientX - box.left) / box.width) * data.duration);
    });
    audio.addEventListener("error", () => {
      controls.querySelector(".sdr").textContent = `cannot load ${info.src}`;
    });
    return track;
  });
  const stems = tracks.filter((t) => t.key);
  const master = tracks.reduce((a, b) => (b.info.duration > a.info.duration ? b : a)).audio;

  // -- mixing: solo beats mute; any solo silences every track that is not soloed ----------
  function applyMix() {
    const anySolo = tracks.some((t) => t.solo);
    for (const t of tracks) {
      t.audio.muted = anySolo ? !t.solo : t.muted;
      t.audio.volume = Number(t.volume.value);
      t.soloButton.classList.toggle("on", t.solo);
      t.muteButton.classList.toggle("on", t.muted);
      t.row.classList.toggle("silent", t.audio.muted);
    }
  }
  function toggleSolo(track) { track.solo = !track.solo; applyMix(); }
  function toggleMute(track) { track.muted = !track.muted; applyMix(); }
  function soloOnly(track) {
    const already = track.solo && tracks.every((t) => t === track || !t.solo);
    for (const t of tracks) t.solo = !already && t === track;
    applyMix();
  }
  function reset() {
    for (const t of tracks) { t.solo = false; t.muted = t.info.kind === "mixture" && hasStems; }
    applyMix();
  }

  // -- transport: one clock, everything started together -----------------------------------
  let playing = false;
  let syncTimer = null;
  const ready = (audio) => new Promise((resolve) => {
    if (!audio.seeking && audio.readyState >= HTMLMediaElement.HAVE_FUTURE_DATA) resolve();
    else {
      const done = () => { if (!audio.seeking) resolve(); };
      audio.addEventListener("canplay", done, { once: true });
      audio.addEventListener("seeked", done, { once: true });
    }
  });
  async function play() {
    if (playing) return;
    playing = true;
    if (master.ended || master.currentTime >= data.duration) seek(0);
    else seek(master.currentTime);
    await Promise.all(tracks.map((t) => ready(t.audio)));
    if (!playing) return;
    await Promise.all(tracks.map((t) => t.audio.play()));  // play() called in one tick
    syncTimer = setInterval(resync, SYNC_INTERVAL_MS);
    $("play").innerHTML = "&#10074;&#10074; Pause";
  }
  function pause() {
    playing = false;
    clearInterval(syncTimer);
    for (const t of tracks) t.audio.pause();
    seek(master.currentTime);
    $("play").innerHTML = "&#9654; Play";
  }
  function seek(seconds) {
    const target = Math.min(Math.max(0, seconds), data.duration);
    for (const t of tracks) t.audio.currentTime = Math.min(target, t.info.duration);
  }
  // A seek lands late (the element stalls while it refills, ~50-100 ms under load) and a
  // follower reset to the master's time is behind again by that much, so it would be reset
  // forever. Each follower learns its landing delay from what it sees after its own seeks
  // and aims that far ahead.
  function resync() {
    const now = master.currentTime;
    for (const t of tracks) {
      const audio = t.audio;
      if (audio === master || now >= t.info.duration) continue;
      if (audio.paused && playing) audio.play();
      if (audio.seeking || audio.readyState < HTMLMediaElement.HAVE_FUTURE_DATA) continue;
      const drift = audio.currentTime - now;
      if (t.justSeeked) {
        t.seekLead = Math.min(0.5, Math.max(0, t.seekLead - drift / 2));
        t.justSeeked = false;
      }
      if (Math.abs(drift) > DRIFT_LIMIT_S) {
        audio.currentTime = Math.min(now + t.seekLead, t.info.duration);
        t.justSeeked = true;
      }
    }
  }
  master.addEventListener("ended", () => { pause(); seek(0); });
  $("play").addEventListener("click", () => (playing ? pause() : play()));
  const seekBar = $("seek");
  seekBar.max = data.duration;
  seekBar.addEventListener("input", () => seek(Number(seekBar.value)));

  // -- keyboard: space plays/pauses, 1-9 solo a stem, 0 back to the full mix --------------
  window.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === " ") {
      event.preventDefault();  // no page scroll, no "click" on a focused button
      if (!event.repeat) (playing ? pause() : play());
    } else if (event.key === "0") {
      reset();
    } else if (/^[1-9]$/.test(event.key)) {
      const track = stems[Number(event.key) - 1];
      if (track) soloOnly(track);
    }
  });
  window.addEventListener("keyup", (event) => { if (event.key === " ") event.preventDefault(); });

  // -- drawing: waveforms from the embedded peak envelope, playheads each frame ----------
  function drawWaveform(track) {
    const { canvas, info } = track;
    const scale = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(canvas.clientWidth * scale));
    const height = Math.max(1, Math.round(canvas.clientHeight * scale));
    canvas.width = width;
    canvas.height = height;
    const context = canvas.getContext("2d");
    context.fillStyle = getComputedStyle(document.body).getPropertyValue("--wave") || "#b86bd6";
    const [low, high] = info.peaks;
    const used = Math.round(width * (info.duration / data.duration));
    for (let x = 0; x < used; x++) {
      const from = Math.floor((x * low.length) / used);
      const to = Math.max(from + 1, Math.floor(((x + 1) * low.length) / used));
      let min = 0, max = 0;
      for (let i = from; i < to && i < low.length; i++) {
        min = Math.min(min, low[i]);
        max = Math.max(max, high[i]);
      }
      const top = ((1 - Math.min(1, max)) * height) / 2;
      const bottom = ((1 - Math.max(-1, min)) * height) / 2;
      context.fillRect(x, top, 1, Math.max(1, bottom - top));
    }
  }
  const drawAll = () => tracks.forEach(drawWaveform);
  window.addEventListener("resize", drawAll);
  function frame() {
    const now = master.currentTime;
    $("time").textContent = `${clock(now)} / ${clock(data.duration)}`;
    if (document.activeElement !== seekBar) seekBar.value = now;
    const left = `${(100 * now) / data.duration}%`;
    for (const t of tracks) t.playhead.style.left = left;
    requestAnimationFrame(frame);
  }
  drawAll();
  applyMix();
  requestAnimationFrame(frame);

  // For scripting and tests: the tracks and the transport.
  window.stemsplitReport = { tracks, stems, master, play, pause, seek, toggleSolo, toggleMute,
                             soloOnly, reset, isPlaying: () => playing };
})();
