"""Cut the carried real-music clip (tests/fixtures/music/) from the MUSDB18 7-second sample.

    python tools/make_music_clip.py MUSDB_SAMPLE_DIR [--out tests/fixtures/music]

MUSDB_SAMPLE_DIR holds "Music Delta - 80s Rock" from the MUSDB18 7-second sample set
(sigsep's museval keeps it in tests/data/MUSDB18-7-SAMPLE) as the dev checkout's
../shared/data/musdb-sample has it: the `.stem.mp4`, and its five AAC streams decoded
to 24-bit FLAC (mixture, drums, bass, other, vocals = streams 0-4; e.g.
`ffmpeg -i X.stem.mp4 -map 0:a:0 -c:a flac -sample_fmt s32 mixture.flac`). The clip is
their first PACKETS AAC frames (3.0 s):

- the `.stem.mp4` is remuxed packet for packet (no re-encode; the cover image is left
  out), so it decodes to exactly the first PACKETS * 1024 samples of the original;
- mixture.flac is those samples of the original FLAC, unchanged (24-bit): decoded by
  the tool that made the sample, independently of our reader;
- the stems (only references for `stemsplit eval`) are those samples rounded to 16 bits,
  which halves their size.

The track (from MedleyDB) is CC BY-NC-SA: for testing and evaluation only, never
shipped in the package.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import soundfile

ROOT = Path(__file__).resolve().parents[1]
TRACK = "Music Delta - 80s Rock"
PACKETS = 129  # AAC frames of 1024 samples after the encoder's priming: 132096 samples
STEMS = ["mixture", "drums", "bass", "other", "vocals"]


def remux(source: Path, target: Path, samples: int) -> None:
    """Copy every audio packet that starts before `samples` (priming ones included)."""
    import av

    with av.open(str(source)) as reader, av.open(str(target), "w", format="mp4") as writer:
        streams = {s.index: writer.add_stream_from_template(s) for s in reader.streams.audio}
        for packet in reader.demux(list(reader.streams.audio)):
            if packet.dts is not None and packet.pts < samples:
                packet.stream = streams[packet.stream.index]
                writer.mux(packet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("musdb", type=Path, help="folder of the MUSDB18 7-second sample")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "music")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    samples = PACKETS * 1024
    remux(args.musdb / f"{TRACK}.stem.mp4", args.out / f"{TRACK}.stem.mp4", samples)
    for stem in STEMS:
        source = args.musdb / f"{stem}.flac"
        assert soundfile.info(str(source)).subtype == "PCM_24"
        audio, rate = soundfile.read(str(source), dtype="float64", frames=samples,
                                     always_2d=True)  # fmt: skip
        subtype = "PCM_24" if stem == "mixture" else "PCM_16"
        soundfile.write(str(args.out / f"{stem}.flac"), audio, rate, subtype=subtype)
    for path in sorted(args.out.iterdir()):
        print(f"{path.name}: {path.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
