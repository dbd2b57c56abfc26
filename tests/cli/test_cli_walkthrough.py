"""A newcomer's walkthrough, through the real command on real files: every finding of
issue 18 as a test that failed before it was fixed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import carried
import numpy as np
import pytest
from batch_cli import music, tiny_demucs_checkpoint, write_audio
from cli_run import label
from e2e_cli import stemsplit

STEMS = ("drums", "bass", "other", "vocals")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("demucs")
    return tiny_demucs_checkpoint(tmp_path_factory.mktemp("walk-model") / "tiny.th")


def _errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_rerun_redoes_a_track_whose_settings_changed_and_says_why(tmp_path, tiny):
    song = write_audio(tmp_path / "song.wav", music(0.5))
    out = tmp_path / "out"
    first = stemsplit(song, "--checkpoint", tiny, "-o", out, "-j", "0")
    assert first.returncode == 0, first.stderr
    again = stemsplit(song, "--checkpoint", tiny, "-o", out, "--json")
    assert json.loads(again.stdout)["tracks"][0]["status"] == "skipped"
    deeper = stemsplit(song, "--checkpoint", tiny, "-o", out, "--bit-depth", "24", "--json")
    assert deeper.returncode == 0, deeper.stderr
    assert json.loads(deeper.stdout)["tracks"][0]["status"] == "done"
    assert "redo song.wav: bit depth 16 -> 24" in deeper.stderr
    import soundfile

    assert soundfile.info(str(out / label(tiny) / "song" / "vocals.wav")).subtype == "PCM_24"
    shifted = stemsplit(song, "--checkpoint", tiny, "-o", out, "--bit-depth", "24",
                        "--shifts", "1", "--json")  # fmt: skip
    assert json.loads(shifted.stdout)["tracks"][0]["status"] == "done"
    assert "shifts 0 -> 1" in shifted.stderr


def test_other_weights_under_the_same_name_are_not_taken_for_done(tmp_path, tiny):
    song = write_audio(tmp_path / "song.wav", music(0.3))
    out = tmp_path / "out"
    assert stemsplit(song, "--checkpoint", tiny, "-o", out).returncode == 0
    other = tmp_path / "other" / "tiny.th"  # same file name, other weights
    tiny_demucs_checkpoint(other, seed=1)
    redo = stemsplit(song, "--checkpoint", other, "-o", out, "--json")
    assert json.loads(redo.stdout)["tracks"][0]["status"] == "done"
    assert label(other) != label(tiny)  # its own folder: the first model's stems stay
    assert (out / label(tiny) / "song" / "vocals.wav").is_file()
    assert (out / label(other) / "song" / "vocals.wav").is_file()


def test_a_library_with_two_tracks_of_the_same_name_mirrors_its_tree(tmp_path, tiny):
    lib = tmp_path / "lib"
    for album in ("A", "B"):
        write_audio(lib / album / "01 Intro.wav", music(0.3, offset=len(album) * 999))
    out = tmp_path / "out"
    result = stemsplit(lib, "-r", "--checkpoint", tiny, "-o", out, "--json")
    assert result.returncode == 0, result.stderr
    for album in ("A", "B"):
        assert sorted(p.stem for p in (out / label(tiny) / album / "01 Intro").glob("*.wav")) == \
            sorted(STEMS)
    clash = stemsplit(lib, "-r", "--checkpoint", tiny, "-o", out, "--filename",
                      "{track}/{stem}.{ext}")  # fmt: skip
    assert clash.returncode == 2
    assert "A/01 Intro.wav" in clash.stderr and "B/01 Intro.wav" in clash.stderr


def test_repeated_options_accumulate(tmp_path, tiny):
    song = write_audio(tmp_path / "song.wav", music(0.3))
    second = tiny_demucs_checkpoint(tmp_path / "m2" / "second.th", seed=2)
    out = tmp_path / "out"
    result = stemsplit(song, "--checkpoint", tiny, "--checkpoint", second, "-s", "vocals",
                       "-s", "drums", "-o", out, "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    folder = out / f"{label(tiny)}+{label(second)}" / "song"
    assert sorted(p.stem for p in folder.glob("*.wav")) == ["drums", "vocals"]
    record = json.loads((folder / "stemsplit.json").read_text())
    assert record["models"] == [label(tiny), label(second)]


def test_an_audio_file_given_as_checkpoint_is_named_and_not_to_be_deleted(tmp_path):
    song = write_audio(tmp_path / "song.wav", music(0.2))
    result = stemsplit(song, "--checkpoint", song, "-o", tmp_path / "out")
    lines = _errors(result)
    assert result.returncode == 1 and len(lines) == 1, lines
    assert "not a model checkpoint: it looks like WAV audio" in lines[0]
    assert "delete" not in lines[0] and "download" not in lines[0]
    assert song.is_file()


def test_download_failure_says_which_model_host_and_ways_out(tmp_path):
    song = write_audio(tmp_path / "song.wav", music(0.2))
    cache = tmp_path / "cache"
    result = stemsplit(song, "-o", tmp_path / "out", env={
        "STEMSPLIT_MIRROR": "http://127.0.0.1:9/models", "STEMSPLIT_MODEL_DIR": str(cache),
        })  # fmt: skip
    lines = _errors(result)
    assert result.returncode == 1 and len(lines) == 1, lines
    line = lines[0]
    for needle in ("model htdemucs", "127.0.0.1:9", "STEMSPLIT_MIRROR=URL", "--checkpoint FILE",
                   str(cache / "955717e8-8726e21a.th")):  # fmt: skip
        assert needle in line, (needle, line)
    assert "urllib3" not in line and "HTTPConnectionPool" not in line and "Errno" not in line
    assert not list(cache.glob("*.lock")) and not list(cache.glob(".*.lock"))


def test_one_failing_input_is_one_line_a_batch_gets_its_table(tmp_path, tiny):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    alone = stemsplit(bad, "--checkpoint", tiny, "-o", tmp_path / "out")
    assert alone.returncode == 1 and len(_errors(alone)) == 1, alone.stderr
    good = write_audio(tmp_path / "good.wav", music(0.2))
    batch = stemsplit(bad, good, "--checkpoint", tiny, "-o", tmp_path / "out")
    assert batch.returncode == 1
    assert "1 done, 0 skipped, 1 failed" in batch.stderr
    assert batch.stderr.strip().splitlines()[-1].startswith("error: ")


def test_a_folder_with_audio_only_in_subfolders_says_add_r(tmp_path, tiny):
    for name in ("a/x.wav", "b/y.flac"):
        write_audio(tmp_path / "lib" / name, music(0.1))
    result = stemsplit(tmp_path / "lib", "--checkpoint", tiny, "-o", tmp_path / "out")
    lines = _errors(result)
    assert result.returncode == 1 and len(lines) == 1, lines
    assert "2 in its subfolders" in lines[0] and "add -r" in lines[0]


def test_a_known_checkpoint_name_needs_no_config(tmp_path):
    fixture = carried.fixture("bs_roformer")
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    shutil.copy(fixture / "config.yaml", zoo / "known.yaml")
    (zoo / "cards.toml").write_text(
        '[known-roformer]\narchitecture = "bs_roformer"\nsources = ["vocals"]\n'
        'residual = "other"\nsamplerate = 44100\nconfig = "known.yaml"\n'
        '[[known-roformer.files]]\nname = "model_known_ep_1.ckpt"\n'
        'url = "https://example.invalid/model_known_ep_1.ckpt"\n'
    )
    checkpoint = tmp_path / "model_known_ep_1.ckpt"
    shutil.copy(fixture / "model.ckpt", checkpoint)
    out = tmp_path / "out"
    result = stemsplit(carried.mixture_of(fixture), "--checkpoint", checkpoint, "-o", out,
                       env={"STEMSPLIT_ZOO": str(zoo / "cards.toml")})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (out / label(checkpoint) / "mixture" / "vocals.wav").is_file()
    broken = tmp_path / "nomodel.yaml"
    broken.write_text("audio:\n  chunk_size: 44100\n")
    bad = stemsplit(carried.mixture_of(fixture), "--checkpoint", checkpoint, "--config", broken,
                    "-o", out)  # fmt: skip
    lines = _errors(bad)
    assert bad.returncode == 1 and len(lines) == 1 and "nomodel.yaml" in lines[0], lines


def test_help_reads_as_words_in_sections_with_examples():
    result = stemsplit("-h")
    assert result.returncode == 0 and "separate" in result.stdout
    text = stemsplit("separate", "-h").stdout
    assert "INPUT..." in text and "<list" not in text and "<path>" not in text.lower()
    for heading in ("Model options", "Output options", "Engine options", "Batch options",
                    "Examples:", "STEMSPLIT_MIRROR=URL"):  # fmt: skip
        assert heading in text, heading


def test_models_listing_fits_80_columns_and_shows_the_default_score():
    import os

    result = stemsplit("models", env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    htdemucs = next(line for line in lines if line.split()[:1] == ["htdemucs"])
    assert "9.00" in htdemucs
    header = lines[0].split()
    assert "installed" not in header or os.environ.get("CI_NO_TORCH")  # same on every row
    info = stemsplit("models", "info", "htdemucs").stdout
    assert "SDR (dB):" in info and "average 9.00" in info and "{'" not in info


def test_verbose_shows_the_plan_and_quiet_keeps_warnings(tmp_path, tiny):
    song = write_audio(tmp_path / "s.wav", np.concatenate([music(0.2), music(0.2)], axis=1))
    verbose = stemsplit(song, "--checkpoint", tiny, "-o", tmp_path / "v", "-v")
    assert verbose.returncode == 0, verbose.stderr
    text = " ".join(verbose.stderr.split())
    for needle in ("on cpu", "fp32", "torch threads", "chunks of", "overlap"):
        assert needle in text, (needle, verbose.stderr)
    quiet = stemsplit(song, "--checkpoint", tiny, "-o", tmp_path / "q", "-q")
    assert quiet.returncode == 0
    assert "downmix" in quiet.stderr.lower() or "channels" in quiet.stderr.lower()
    assert "done" not in quiet.stderr


def test_speed_has_one_name_in_json_and_the_record(tmp_path, tiny):
    song = write_audio(tmp_path / "song.wav", music(0.2))
    result = stemsplit(song, "--checkpoint", tiny, "-o", tmp_path / "out", "--json")
    summary = json.loads(result.stdout)
    record = json.loads((tmp_path / "out" / label(tiny) / "song" / "stemsplit.json").read_text())
    assert summary["speed"] > 0 and summary["tracks"][0]["speed"] > 0 and record["speed"] > 0
    assert "realtime_factor" not in result.stdout and "real_time_factor" not in record


def test_report_index_lists_failed_tracks(tmp_path, tiny):
    good = write_audio(tmp_path / "good.wav", music(0.2))
    bad = tmp_path / "bad.wav"
    bad.write_text("no")
    out = tmp_path / "out"
    result = stemsplit(good, bad, "--checkpoint", tiny, "-o", out, "--report")
    assert result.returncode == 1
    index = (out / label(tiny) / "index.html").read_text()
    assert "bad.wav" in index


def test_opus_output_notes_its_fixed_rate(tmp_path, tiny):
    song = write_audio(tmp_path / "song.wav", music(0.2))
    result = stemsplit(song, "--checkpoint", tiny, "-o", tmp_path / "out", "-f", "opus")
    assert result.returncode == 0, result.stderr
    assert "48 kHz" in result.stderr


def test_eval_follows_symlinked_track_folders(tmp_path):
    refs = tmp_path / "refs"
    real = tmp_path / "elsewhere" / "song"
    for stem in ("vocals", "drums"):
        write_audio(real / f"{stem}.wav", music(0.1, offset=len(stem) * 100))
    refs.mkdir()
    (refs / "song").symlink_to(real, target_is_directory=True)
    result = stemsplit("eval", real, refs, "--json")
    assert result.returncode == 0, result.stderr
    assert {row["stem"] for row in json.loads(result.stdout)["scores"]} == {"vocals", "drums"}


def test_a_terminal_sees_the_model_loading_first(tmp_path, tiny):
    """On a terminal, the first thing shown is the model loading (its time counted),
    before torch is even imported; in a pipe or log no bars are drawn."""
    import os
    import pty
    import select
    import sys
    import time

    song = write_audio(tmp_path / "song.wav", music(0.3))
    started = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:  # the child: the real command on a pseudo-terminal
        os.environ.update({"COLUMNS": "100", "OMP_NUM_THREADS": "1"})
        os.execv(sys.executable, [sys.executable, "-m", "stemsplit", str(song),
                                  "--checkpoint", str(tiny), "-o", str(tmp_path / "out")])
    seen, first = b"", None
    while select.select([fd], [], [], 120)[0]:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        seen += data
        if first is None and b"loading" in seen:
            first = time.perf_counter() - started
    os.waitpid(pid, 0)
    text = seen.decode(errors="replace")
    assert first is not None, text
    assert text.index("loading") < text.index("done"), text
    assert first < 10, first  # ~0.4 s on a quiet machine; loose for loaded CI machines
