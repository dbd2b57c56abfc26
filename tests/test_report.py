"""The listening report: analysis values, page contents, the CLI, and the page in Chromium."""

from __future__ import annotations

import io
import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("PIL", reason="the report needs Pillow (the `report` extra)")
from PIL import Image

from stemsplit import report

RATE = 44100
SECONDS = 3.0
STEM_NAMES = ["vocals", "bass", "drums"]


def _signals(seconds: float = SECONDS, seed: int = 0) -> dict[str, np.ndarray]:
    """Stereo `(frames, 2)` float32 stems: a 440 Hz tone, a 55 Hz tone, noise bursts."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    mono = {
        "vocals": 0.5 * np.sin(2 * np.pi * 440 * t),
        "bass": 0.6 * np.sin(2 * np.pi * 55 * t),
        "drums": 0.4 * rng.standard_normal(len(t)) * (t % 0.5 < 0.06),
    }
    return {k: np.stack([v, 0.8 * v], axis=1).astype(np.float32) for k, v in mono.items()}


def _write_track(folder: Path, signals: dict[str, np.ndarray]) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, signal in signals.items():
        paths[name] = folder / f"{name}.wav"
        sf.write(paths[name], signal, RATE, subtype="FLOAT")
    return paths


@pytest.fixture()
def track(tmp_path: Path) -> dict:
    """A separated track `sep/htdemucs/song`, its mixture and noisy reference stems."""
    signals = _signals()
    stems = _write_track(tmp_path / "sep" / "htdemucs" / "song", signals)
    mixture = tmp_path / "inputs" / "song.wav"
    mixture.parent.mkdir()
    sf.write(mixture, sum(signals.values()), RATE, subtype="FLOAT")
    rng = np.random.default_rng(1)
    noisy = {k: (v + 0.01 * rng.standard_normal(v.shape)).astype(np.float32)
             for k, v in signals.items()}
    references = _write_track(tmp_path / "refs" / "song", noisy)
    return {"signals": signals, "stems": stems, "mixture": mixture, "noisy": noisy,
            "references": references, "dir": stems["vocals"].parent}


def _page_data(page: Path) -> dict:
    text = page.read_text(encoding="utf-8")
    pattern = r'<script type="application/json" id="report-data">(.*?)</script>'
    match = re.search(pattern, text, re.DOTALL)
    assert match, "the page embeds its data as JSON"
    return json.loads(match.group(1))


# -- analysis -------------------------------------------------------------------------------


def test_analyse_duration_peaks_and_tone_row(track: dict) -> None:
    analysis = report.analyse(track["stems"]["vocals"])
    signal = track["signals"]["vocals"]
    assert analysis.samplerate == RATE
    assert analysis.frames == len(signal)
    assert analysis.peaks.shape == (2, report.PEAK_BUCKETS)
    assert analysis.peaks[0].min() == pytest.approx(signal.min(), abs=1e-7)
    assert analysis.peaks[1].max() == pytest.approx(signal.max(), abs=1e-7)
    assert np.all(analysis.peaks[0] <= analysis.peaks[1])
    rows, columns = analysis.power.shape
    assert rows == report.SPEC_ROWS and 0 < columns <= report.SPEC_COLUMNS
    # The loudest band in every column is the one holding 440 Hz.
    edges = np.geomspace(report.F_LOW_HZ, RATE / 2, report.SPEC_ROWS + 1)
    expected_row = int(np.searchsorted(edges, 440.0) - 1)
    loudest = analysis.power.argmax(axis=0)
    assert np.all(np.abs(loudest - expected_row) <= 1)


def test_streamed_spectrogram_equals_whole_signal_stft(track: dict) -> None:
    """Block-wise STFT (frames spanning read blocks) equals the STFT of the whole signal."""
    path = track["stems"]["drums"]
    analysis = report.analyse(path)
    mono = track["signals"]["drums"].mean(axis=1)
    frames = len(mono)
    columns = min(report.SPEC_COLUMNS, frames // (report.N_FFT // 4))
    hop = max(report.N_FFT // 4, frames // (columns * 4))
    half = report.N_FFT // 2
    padded = np.concatenate([np.zeros(half), mono, np.zeros(half)])
    starts = np.arange(0, len(padded) - report.N_FFT + 1, hop)
    window = np.hanning(report.N_FFT)
    spectra = np.abs(np.fft.rfft(np.stack([padded[s:s + report.N_FFT] for s in starts]) * window,
                                 axis=1)) ** 2
    bands = spectra @ report._band_matrix(RATE)
    column = np.minimum(starts * columns // frames, columns - 1)
    expected = np.stack([bands[column == c].mean(axis=0) for c in range(columns)]).T
    assert analysis.power.shape == expected.shape
    np.testing.assert_allclose(analysis.power, expected, rtol=2e-3, atol=1e-6 * expected.max())


def test_signal_to_distortion_matches_numpy(track: dict) -> None:
    from stemsplit.metrics import usdr

    for name in STEM_NAMES:
        reference = track["noisy"][name].astype(np.float64)
        estimate = track["signals"][name].astype(np.float64)
        expected = 10 * math.log10(np.sum(reference**2) / np.sum((reference - estimate) ** 2))
        got = report.signal_to_distortion(track["references"][name], track["stems"][name])
        assert got == pytest.approx(expected, abs=1e-4)
        assert got == pytest.approx(usdr(reference.T, estimate.T), abs=1e-9)


def test_magma_colormap_runs_dark_to_light() -> None:
    colours = report.magma(np.linspace(0, 1, 50)).astype(float)
    assert tuple(colours[0]) == (0, 0, 4) and tuple(colours[-1]) == (252, 253, 191)
    luminance = colours @ np.array([0.2126, 0.7152, 0.0722])
    assert np.all(np.diff(luminance) > 0)


# -- the page -------------------------------------------------------------------------------


def test_write_report_is_self_contained(track: dict) -> None:
    metadata = {"models": ["htdemucs"], "speed": 4.0, "settings": {"overlap": 0.25}}
    page = report.write_report(track["dir"], track["stems"], mixture=track["mixture"],
                               metadata=metadata, references=track["references"])
    assert page == track["dir"] / "report.html"
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), "no network URLs"
    assert "<script src" not in text and "<link" not in text, "CSS and JS are inline"
    data = _page_data(page)
    assert [t["name"] for t in data["tracks"]] == ["mixture", *STEM_NAMES]
    assert data["tracks"][0]["src"] == "../../../inputs/song.wav"  # referenced, not copied
    assert data["metadata"] == metadata
    assert data["duration"] == pytest.approx(SECONDS)
    for entry in data["tracks"]:
        assert (track["dir"] / entry["src"]).is_file()
        with Image.open(track["dir"] / entry["spectrogram"]) as image:
            assert image.size[1] == report.SPEC_ROWS and image.size[0] > 100
            assert len(image.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 10
        assert len(entry["peaks"]) == 2 and len(entry["peaks"][0]) == report.PEAK_BUCKETS
    sdrs = {t["name"]: t["sdr"] for t in data["tracks"]}
    assert sdrs["mixture"] is None
    for name in STEM_NAMES:
        assert sdrs[name] == pytest.approx(
            report.signal_to_distortion(track["references"][name], track["stems"][name]), abs=1e-3
        )


def test_write_index_links_every_report(tmp_path: Path) -> None:
    root = tmp_path / "htdemucs"
    pages = []
    for name, seed in (("a song", 0), ("b#2", 1)):
        stems = _write_track(root / name, _signals(1.0, seed))
        pages.append(report.write_report(root / name, stems, metadata={"rtf": math.nan}))
    assert _page_data(pages[0])["metadata"] == {"rtf": None}  # NaN is not JSON
    index = report.write_index(root, pages)
    data = _page_data(index)
    assert [row["track"] for row in data["reports"]] == ["a song", "b#2"]
    assert [row["href"] for row in data["reports"]] == ["a%20song/report.html", "b%232/report.html"]


def test_cli_report_model_folder(track: dict, tmp_path: Path) -> None:
    second = _write_track(tmp_path / "sep" / "htdemucs" / "other", _signals(1.5, seed=3))
    (second["vocals"].parent / "stemsplit.json").write_text(json.dumps({"models": ["htdemucs"]}))
    result = subprocess.run(
        [sys.executable, "-m", "stemsplit", "report", str(tmp_path / "sep" / "htdemucs"),
         "--reference", str(tmp_path / "refs"), "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert sorted(Path(p).parent.name for p in out["reports"]) == ["other", "song"]
    assert Path(out["index"]).is_file()
    song = _page_data(track["dir"] / "report.html")
    assert all(t["sdr"] is not None for t in song["tracks"])  # refs/song exists
    other = _page_data(second["vocals"].parent / "report.html")
    assert other["metadata"] == {"models": ["htdemucs"]}
    assert all(t["sdr"] is None for t in other["tracks"])  # no refs/other


def test_cli_report_errors_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "missing", tmp_path / "empty"):
        result = subprocess.run([sys.executable, "-m", "stemsplit", "report", str(folder)],
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 1
        assert result.stderr.startswith("error:") and "Traceback" not in result.stderr


# -- in the browser -------------------------------------------------------------------------

LOADED = """(async () => {
  const r = window.stemsplitReport;
  const loaded = (a) => a.readyState >= 1 ? null : new Promise((ok, bad) => {
    a.addEventListener('loadedmetadata', ok, {once: true});
    a.addEventListener('error', () => bad(new Error('cannot load ' + a.src)), {once: true});
  });
  const decoded = (img) => img.complete ? null
    : new Promise((ok) => img.addEventListener('load', ok));
  await Promise.all([...r.tracks.map(t => loaded(t.audio)),
                     ...r.tracks.map(t => decoded(t.image))]);
  return r.tracks.map(t => ({name: t.info.name, duration: t.audio.duration,
                             frames: t.info.frames, imageWidth: t.image.naturalWidth}));
})()"""
STATE = """window.stemsplitReport.tracks.map(t => ({name: t.info.name, muted: t.audio.muted,
  volume: t.audio.volume, time: t.audio.currentTime, paused: t.audio.paused}))"""


def _key(browser, key: str) -> None:
    code = "Space" if key == " " else f"Digit{key}"
    for kind in ("keyDown", "keyUp"):
        browser.call("Input.dispatchKeyEvent", type=kind, key=key, code=code,
                     text=key if kind == "keyDown" else "")


def test_page_plays_in_sync_in_headless_chromium(track: dict) -> None:
    from report_browser import CHROMIUM, Browser

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    page = report.write_report(track["dir"], track["stems"], mixture=track["mixture"])
    with Browser() as browser:
        browser.navigate(page.as_uri())
        for entry in browser.evaluate(LOADED):
            assert entry["imageWidth"] > 0, entry
            assert abs(entry["duration"] - entry["frames"] / RATE) <= 1 / RATE, entry

        def state() -> dict:
            return {s["name"]: s for s in browser.evaluate(STATE)}

        # The full mix: stems audible, mixture muted.
        assert [s["muted"] for s in state().values()] == [True, False, False, False]
        _key(browser, "2")  # solo the second stem
        assert {n: s["muted"] for n, s in state().items()} == {
            "mixture": True, "vocals": True, "bass": False, "drums": True}
        _key(browser, "0")
        browser.evaluate("document.querySelectorAll('.track')[1].querySelector('.mute').click()")
        assert {n: s["muted"] for n, s in state().items()} == {
            "mixture": True, "vocals": True, "bass": False, "drums": False}
        browser.evaluate("""(() => { const v = document.querySelectorAll('.track')[3]
            .querySelector('input[type=range]'); v.value = 0.3;
            v.dispatchEvent(new Event('input')); })()""")
        assert state()["drums"]["volume"] == pytest.approx(0.3)
        assert state()["bass"]["volume"] == pytest.approx(1.0)

        _key(browser, " ")  # play
        browser.evaluate("new Promise(ok => { const r = window.stemsplitReport;"
                         " const wait = () => r.master.paused ? setTimeout(wait, 20) : ok();"
                         " wait(); })")
        started = state()
        assert not any(s["paused"] for s in started.values())
        assert np.ptp([s["time"] for s in started.values()]) < 0.05
        time.sleep(2.0)
        playing = state()
        times = [s["time"] for s in playing.values()]
        assert not any(s["paused"] for s in playing.values())
        assert min(times) > started["mixture"]["time"] + 1.0, times
        assert np.ptp(times) < 0.05, times
        # Knock one stem 0.4 s off: the drift correction pulls it back.
        browser.evaluate("window.stemsplitReport.tracks[2].audio.currentTime += 0.4")
        time.sleep(1.5)
        times = [s["time"] for s in state().values()]
        assert np.ptp(times) < 0.05, times
        _key(browser, " ")  # pause
        assert all(s["paused"] for s in state().values())

        screenshot = Image.open(io.BytesIO(browser.screenshot())).convert("RGB")
    assert screenshot.size[0] > 600
    colours = screenshot.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50, "the screenshot is blank"


META_ROWS = """[...document.querySelectorAll('#meta tr')].map(r => [...r.children]
  .map(c => c.textContent))"""


def test_page_shows_each_field_once_and_settings_as_rows(track: dict) -> None:
    from report_browser import CHROMIUM, Browser

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    metadata = {"models": ["htdemucs"], "duration": 2.0, "speed": 4.0,
                "stems": {"vocals": "vocals.wav"},
                "settings": {"shifts": 2, "overlap": 0.25, "segment_seconds": None,
                             "stems": ["vocals"], "bit_depth": 24},
                "model_files": [{"name": "htdemucs", "files": {"a.th": "8726e21a" * 8}}]}
    page = report.write_report(track["dir"], track["stems"], mixture=track["mixture"],
                               metadata=metadata)  # fmt: skip
    with Browser() as browser:
        browser.navigate(page.as_uri())
        rows = browser.evaluate(META_ROWS)
    labels = [row[0] for row in rows]
    assert len(labels) == len(set(labels)), labels  # no field twice
    assert ["shifts", "2"] in rows and ["overlap", "0.250"] in rows and ["bit depth", "24"] in rows
    assert "segment seconds" not in labels and "stems" not in labels
    assert ["files of htdemucs", "a.th (8726e21a8726)"] in rows
