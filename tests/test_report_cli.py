"""`stemsplit INPUT --report`: report.html and stemsplit.json beside the stems, an index
for a batch, SDR per stem with `--reference`. Through the real command.

(The page's behaviour in a browser is tests/report_browser.py's job.)
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from batch_cli import music, read, stemsplit, tiny_demucs_checkpoint, write_audio
from cli_run import label

pytest.importorskip("PIL", reason="reports need Pillow: pip install 'stemsplit-cli[report]'")

STEMS = ("drums", "bass", "other", "vocals")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_demucs_checkpoint(tmp_path_factory.mktemp("report-model") / "tiny.th")


def _page_data(page: Path) -> dict:
    text = page.read_text(encoding="utf-8")
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>',
                      text, re.DOTALL)  # fmt: skip
    assert match, f"{page} embeds no report data"
    return json.loads(match.group(1))


def _resolve(page: Path, url: str) -> Path:
    """Where a relative link on `page` points; absolute links fail the test."""
    assert not url.startswith(("/", "file:", "http")), url
    return (page.parent / unquote(url)).resolve()


def _usdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """By hand: 10 log10((sum s^2 + 1e-8) / (sum (s - s_hat)^2 + 1e-8)) (MSST's uSDR)."""
    s, s_hat = reference.astype(np.float64), estimate.astype(np.float64)
    return 10 * math.log10((np.sum(s**2) + 1e-8) / (np.sum((s - s_hat) ** 2) + 1e-8))


def test_one_track_report_and_metadata_beside_the_stems(tiny_model, tmp_path):
    song = write_audio(tmp_path / "in" / "song.wav", music())
    out = tmp_path / "out"
    result = stemsplit(song, "--checkpoint", tiny_model, "-o", out, "--report", "--shifts", "0")
    assert result.returncode == 0, result.stderr
    track = out / label(tiny_model) / "song"
    page = track / "report.html"
    assert page.is_file()
    assert not (out / label(tiny_model) / "index.html").exists(), "one track: no index page"

    meta = json.loads((track / "stemsplit.json").read_text())
    assert meta["models"] == [label(tiny_model)]
    assert meta["stems"] == {s: f"{s}.wav" for s in STEMS}
    assert meta["duration"] == pytest.approx(len(read(song)) / 44100, abs=1e-3)
    assert meta["speed"] > 0
    assert meta["settings"]["format"] == "wav" and meta["settings"]["shifts"] == 0

    data = _page_data(page)
    assert data["metadata"] == meta, "the page shows what stemsplit.json says"
    by_name = {t["name"]: t for t in data["tracks"]}
    assert set(by_name) == {"mixture", *STEMS}
    assert _resolve(page, by_name["mixture"]["src"]) == song.resolve()
    for stem in STEMS:
        assert by_name[stem]["src"] == f"{stem}.wav"
        assert _resolve(page, by_name[stem]["spectrogram"]).is_file()
        assert by_name[stem]["sdr"] is None  # no --reference
    assert data["duration"] == pytest.approx(meta["duration"], abs=1e-3)


def test_batch_report_index_links_every_track_and_reference_gives_sdr(tiny_model, tmp_path):
    inputs = tmp_path / "in"
    first = write_audio(inputs / "first.wav", music())
    write_audio(inputs / "second song.wav", music(offset=11000))
    # references: the first track's "vocals" is its whole mix; the second has none
    reference = tmp_path / "refs"
    write_audio(reference / "first" / "vocals.wav", read(first))
    out = tmp_path / "out"
    result = stemsplit(inputs, "--checkpoint", tiny_model, "-o", out, "--reference", reference,
                       "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    index = out / label(tiny_model) / "index.html"
    assert summary["index"] == str(index)
    links = [row["href"] for row in _page_data(index)["reports"]]
    assert sorted(_resolve(index, link) for link in links) == sorted(
        (out / label(tiny_model) / name / "report.html").resolve() for name in ("first", "second song")
    )
    for track in summary["tracks"]:
        assert Path(track["report"]).is_file()

    first_page = _page_data(out / label(tiny_model) / "first" / "report.html")
    sdr = {t["name"]: t["sdr"] for t in first_page["tracks"]}
    expected = _usdr(read(reference / "first" / "vocals.wav"),
                     read(out / label(tiny_model) / "first" / "vocals.wav"))  # fmt: skip
    assert sdr["vocals"] == pytest.approx(expected, abs=1e-3)
    assert sdr["drums"] is None and sdr["bass"] is None
    second = _page_data(out / label(tiny_model) / "second song" / "report.html")
    assert all(t["sdr"] is None for t in second["tracks"])


def test_report_needs_a_folder_per_track(tmp_path):
    song = write_audio(tmp_path / "song.wav", music(0.1))
    result = stemsplit(song, "--report", "--filename", "{track}_{stem}.{ext}",
                       "--checkpoint", tmp_path / "never-loaded.th", "-o", tmp_path / "out")
    assert result.returncode == 2
    assert "--report" in result.stderr and "Traceback" not in result.stderr
