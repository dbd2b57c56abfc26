"""Fixed test signals for the community metrics, made from seeds (no audio files), shared
by tools/msst_metrics_fixture.py (which froze MSST's values for them into
tests/data/msst_metrics.json) and the tests that compare stemsplit's values with those.

Each case is `(reference, estimate)` (and a mixture in `log_wmse_cases`), float32
`(channels, samples)` at 44.1 kHz: a harmonic "voice" with a vibrato and an envelope over
a little noise, and estimates that bleed another instrument in, lose the top of the
spectrum, or are nearly right.
"""

from __future__ import annotations

import numpy as np

RATE = 44100


def _voice(rng: np.random.Generator, samples: int, base: float) -> np.ndarray:
    t = np.arange(samples) / RATE
    pitch = base * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    tone = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 12))
    envelope = np.clip(np.sin(np.pi * t / t[-1]) * 1.5, 0, 1)
    return 0.2 * tone * envelope + 0.005 * rng.standard_normal(samples)


def _lowpass(audio: np.ndarray, cutoff_hz: float) -> np.ndarray:
    spectrum = np.fft.rfft(audio, axis=-1)
    spectrum[..., np.fft.rfftfreq(audio.shape[-1], 1 / RATE) > cutoff_hz] = 0
    return np.fft.irfft(spectrum, n=audio.shape[-1], axis=-1)


def cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (reference, estimate)."""
    rng = np.random.default_rng(32)
    samples = int(1.5 * RATE)
    voice = np.stack([_voice(rng, samples, 220.0), _voice(rng, samples, 220.0)])
    other = np.stack([_voice(rng, samples, 97.0), _voice(rng, samples, 131.0)])
    noise = 0.01 * rng.standard_normal(voice.shape)
    mono = _voice(rng, int(0.8 * RATE), 330.0)[None]
    found = {
        "bleeding": (voice, 0.95 * voice + 0.3 * other),
        "dull": (voice, 0.97 * _lowpass(voice, 3000.0) + 0.1 * (voice - _lowpass(voice, 3000.0))
                 + 0.1 * noise),
        "close": (voice, voice + noise),
        "poor": (voice, 0.6 * voice + 0.5 * other),
        "mono": (mono, 1.1 * _lowpass(mono, 6000.0) + 0.05 * _lowpass(other[:1, : mono.shape[1]],
                                                                       2000.0)),
    }  # fmt: skip
    return {name: (r.astype(np.float32), e.astype(np.float32)) for name, (r, e) in found.items()}


def log_wmse_cases() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """name -> (reference, estimate, mixture) for log_wmse, which also scales by the mix:
    the cases above over an accompaniment, and ones for each of its details: errors near
    its -68 dB gate, 20 dB apart between channels, under a mix whose right channel is
    26 dB down ("faint": the gate and MSST's channel-by-channel pairing both move it), a
    silent reference, and 23 samples (a length MSST's `samples / 44100 * 44100` floors
    to 22)."""
    rng = np.random.default_rng(68)
    found = {}
    for name, (reference, estimate) in cases().items():
        accompaniment = 0.5 * np.roll(reference, reference.shape[-1] // 3, axis=-1)
        found[name] = (reference, estimate, reference + accompaniment)
    reference, _ = cases()["close"]
    mix = (1.5 * reference) * np.array([[1.0], [0.05]])
    error = np.array([[3e-5], [3e-4]]) * rng.standard_normal(reference.shape)
    found["faint"] = (reference, reference + error, mix)
    found["silent_reference"] = (np.zeros_like(reference), 0.01 * np.roll(reference, 5000), mix)
    short = reference[:, 20000:20023]
    found["short"] = (short, short + 0.01 * rng.standard_normal(short.shape), 2 * short)
    return {name: (r.astype(np.float32), e.astype(np.float32), m.astype(np.float32))
            for name, (r, e, m) in found.items()}  # fmt: skip
