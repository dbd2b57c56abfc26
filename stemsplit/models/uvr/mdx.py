"""MDX-Net (UVR's ONNX models), separated exactly as audio-separator 0.47.1's MDXSeparator.

The network maps a spectrogram [B, 4, dim_f, frames] (real and imaginary parts of
both channels, the first `dim_f` bins of an `n_fft` STFT with hop `hop_length`) to
the primary stem's spectrogram. Around it, per track:

- the mix is peak-normalised (`normalization_threshold`, `amplification_threshold`),
- cut into chunks of `hop_length * (segment_size - 1)` samples every
  `int((1 - overlap) * chunk)` over the track padded by `n_fft // 2` zeros in front and
  `gen_size + trim - length % gen_size` behind; each chunk is weighted by a Hann window
  of its (possibly shorter, at the end) real length and the sum divided by the summed
  windows (no window when overlap is 0);
- in each chunk the three lowest bins are zeroed; with `enable_denoise` the network
  runs on the negated spectrogram too (`-0.5 * net(-X) + 0.5 * net(X)`);
- the primary stem is the result times the mix's original peak; the secondary is
  `normalised mix - compensate * primary`;
- each stem is peak-normalised again as audio-separator writes it (same thresholds).

`forward` takes whole tracks (the recipe is one long chunk) and returns
[B, 2, C, T]: primary and secondary. The network runs through onnxruntime (see
`OnnxNetwork`); the STFTs are torch's, on the input's device.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from stemsplit.errors import ModelError
from stemsplit.models.uvr.common import (
    SAMPLERATE,
    normalize_stems,
    peak_normalize,
    stem_name,
    stem_pair,
    whole_track_recipe,
)


@dataclass(frozen=True)
class MDXSettings:
    """Model data (hash-keyed facts) plus audio-separator's `mdx_params` and common settings."""

    n_fft: int
    dim_f: int
    dim_t: int
    compensate: float
    hop_length: int = 1024
    segment_size: int = 256
    overlap: float = 0.25
    batch_size: int = 1
    enable_denoise: bool = False
    normalization_threshold: float = 0.9
    amplification_threshold: float = 0.0

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> MDXSettings:
        missing = [k for k in ("compensate", "mdx_dim_f_set", "mdx_dim_t_set",
                               "mdx_n_fft_scale_set") if k not in params]  # fmt: skip
        if missing:
            raise ModelError(f"MDX model data lacks {', '.join(missing)}")
        mdx = dict(params.get("mdx_params") or {})
        unknown = set(mdx) - {"hop_length", "segment_size", "overlap", "batch_size",
                              "enable_denoise"}  # fmt: skip
        if unknown:
            raise ModelError(f"unknown mdx_params: {', '.join(sorted(unknown))}")
        settings = cls(
            n_fft=int(params["mdx_n_fft_scale_set"]),
            dim_f=int(params["mdx_dim_f_set"]),
            dim_t=2 ** int(params["mdx_dim_t_set"]),
            compensate=float(params["compensate"]),
            normalization_threshold=float(params.get("normalization_threshold", 0.9)),
            amplification_threshold=float(params.get("amplification_threshold", 0.0)),
        )
        settings = replace(settings, **{k: type(getattr(settings, k))(v) for k, v in mdx.items()})
        if not 0 <= settings.overlap < 1:
            raise ModelError(f"mdx_params overlap must be in [0, 1), got {settings.overlap}")
        if settings.dim_f > settings.n_fft // 2 + 1:
            raise ModelError("mdx_dim_f_set exceeds the STFT's bins (mdx_n_fft_scale_set // 2 + 1)")
        if settings.hop_length * (settings.segment_size - 1) <= settings.n_fft:
            raise ModelError("segment_size too small for this n_fft")
        return settings


class OnnxNetwork:
    """An ONNX graph run by onnxruntime: float32 [B, 4, F, T] in, same shape out.

    onnxruntime runs on the CPU (CUDA when its GPU build is installed and the input is
    on a CUDA device); the engine's precision does not apply to it.
    """

    def __init__(self, path: Path) -> None:
        try:
            import onnxruntime
        except ImportError as err:
            raise ModelError(
                f"{path}: MDX-Net ONNX models need onnxruntime: pip install 'stemsplit-cli[onnx]'"
            ) from err
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        self._ort = onnxruntime
        self._options = options
        self.path = Path(path)
        self._sessions: dict[str, Any] = {}
        self.input_name = self._session("cpu").get_inputs()[0].name

    def _session(self, device: str):
        if device not in self._sessions:
            providers = ["CPUExecutionProvider"]
            if device == "cuda" and "CUDAExecutionProvider" in self._ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            try:
                self._sessions[device] = self._ort.InferenceSession(
                    str(self.path), sess_options=self._options, providers=providers
                )
            except Exception as err:  # onnxruntime raises its own exception types
                raise ModelError(f"{self.path}: not a loadable ONNX model ({err})") from err
        return self._sessions[device]

    def __call__(self, spec: torch.Tensor) -> torch.Tensor:
        session = self._session(spec.device.type)
        out = session.run(None, {self.input_name: spec.detach().float().cpu().numpy()})[0]
        return torch.from_numpy(np.asarray(out, dtype=np.float32)).to(spec.device)


class MDXNet(nn.Module):
    """A UVR MDX-Net ONNX model behind the stemsplit model protocol."""

    window: torch.Tensor  # buffer (register_buffer in __init__)

    def __init__(
        self, network: Callable[[torch.Tensor], torch.Tensor], settings: MDXSettings,
        primary: str = "Vocals", secondary: str = "Instrumental",
    ) -> None:
        super().__init__()
        self.network = network
        self.settings = settings
        # what the config says; each run's flags apply over it, not over the last run's
        self.config_settings = settings
        self.uvr_stems = (primary, secondary)
        self.sources = [stem_name(primary), stem_name(secondary)]
        self.samplerate = SAMPLERATE
        self.audio_channels = 2
        self.residual: str | None = None
        self.recipe = whole_track_recipe(SAMPLERATE)
        self.register_buffer("window", torch.hann_window(settings.n_fft, periodic=True),
                             persistent=False)  # fmt: skip

    # What the engine's --overlap / --batch-size flags set for this model (it frames
    # the track itself: `models.base.SelfChunking`).
    def apply_engine_settings(
        self, overlap: float | None = None, batch_size: int | None = None,
        tta: bool | None = None,
    ) -> None:
        """Use the user's --overlap / --batch-size for the internal chunking (TTA: none)."""
        changes: dict[str, Any] = {}
        if overlap is not None:
            changes["overlap"] = float(overlap)
        if batch_size is not None:
            changes["batch_size"] = int(batch_size)
        self.settings = replace(self.config_settings, **changes)

    def valid_length(self, length: int) -> int:
        return length

    # -- spectrograms, as audio-separator's uvr_lib_v5.stft.STFT --
    def _stft(self, wave: torch.Tensor) -> torch.Tensor:
        s = self.settings
        batch = wave.shape[0]
        spec = torch.stft(wave.reshape(-1, wave.shape[-1]), n_fft=s.n_fft, hop_length=s.hop_length,
                          window=self.window, center=True, return_complex=True)  # fmt: skip
        spec = torch.view_as_real(spec).permute(0, 3, 1, 2)  # [B*C, 2, bins, frames]
        spec = spec.reshape(batch, -1, spec.shape[-2], spec.shape[-1])
        return spec[:, :, : s.dim_f]

    def _istft(self, spec: torch.Tensor) -> torch.Tensor:
        s = self.settings
        batch, channels, freq, frames = spec.shape
        bins = s.n_fft // 2 + 1
        pad = torch.zeros(batch, channels, bins - freq, frames, dtype=spec.dtype, device=spec.device)
        spec = torch.cat([spec, pad], dim=-2).reshape(-1, 2, bins, frames).permute(0, 2, 3, 1)
        complex_spec = torch.complex(spec[..., 0].contiguous(), spec[..., 1].contiguous())
        wave = torch.istft(complex_spec, n_fft=s.n_fft, hop_length=s.hop_length,
                           window=self.window, center=True)  # fmt: skip
        return wave.reshape(batch, 2, -1)

    def _run_chunks(self, chunks: torch.Tensor) -> torch.Tensor:
        """audio-separator's run_model on [N, 2, chunk] -> [N, 2, chunk]."""
        spec = self._stft(chunks.float())
        spec[:, :, :3, :] = 0
        if self.settings.enable_denoise:
            pred = self.network(-spec) * -0.5 + self.network(spec) * 0.5
        else:
            pred = self.network(spec)
        return self._istft(pred.float())

    def _demix(self, mix: np.ndarray, device: torch.device) -> np.ndarray:
        """audio-separator's MDXSeparator.demix on a [2, T] float32 mix."""
        s = self.settings
        trim = s.n_fft // 2
        chunk = s.hop_length * (s.segment_size - 1)
        gen_size = chunk - 2 * trim
        length = mix.shape[-1]
        pad = gen_size + trim - length % gen_size
        mixture = np.concatenate(
            (np.zeros((2, trim), np.float32), mix, np.zeros((2, pad), np.float32)), 1
        )
        total = mixture.shape[-1]
        step = int((1 - s.overlap) * chunk)
        result = np.zeros((1, 2, total), dtype=np.float32)
        divider = np.zeros((1, 2, total), dtype=np.float32)
        starts = list(range(0, total, step))
        for first in range(0, len(starts), max(1, s.batch_size)):
            group = starts[first : first + max(1, s.batch_size)]
            parts = np.zeros((len(group), 2, chunk), dtype=np.float32)
            for row, start in enumerate(group):
                end = min(start + chunk, total)
                parts[row, :, : end - start] = mixture[:, start:end]
            outputs = self._run_chunks(torch.from_numpy(parts).to(device)).cpu().numpy()
            for row, start in enumerate(group):
                end = min(start + chunk, total)
                actual = end - start
                tar = outputs[row : row + 1]
                if s.overlap != 0:
                    window = np.tile(np.hanning(actual)[None, None, :], (1, 2, 1))
                    tar[..., :actual] *= window
                    divider[..., start:end] += window
                else:
                    divider[..., start:end] += 1
                result[..., start:end] += tar[..., :actual]
        with np.errstate(invalid="ignore", divide="ignore"):
            waves = result / divider
        return waves[0, :, trim:-trim][:, :length]

    def separate_track(self, mix: np.ndarray, device: torch.device) -> np.ndarray:
        """[2, T] float32 -> [2 stems, 2, T]: audio-separator's MDXSeparator.separate."""
        s = self.settings
        mix = np.array(mix, dtype=np.float32)
        peak = np.abs(mix).max()
        mix = peak_normalize(mix, s.normalization_threshold, s.amplification_threshold)
        primary = self._demix(mix, device) * peak
        secondary = -primary * s.compensate + mix
        stems = np.stack([primary, secondary]).astype(np.float32, copy=False)
        return normalize_stems(stems, s.normalization_threshold, s.amplification_threshold)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        if mix.shape[1] == 1:
            mix = mix.expand(-1, 2, -1)
        if mix.shape[1] != 2:
            raise ModelError(f"MDX-Net models take stereo audio, got {mix.shape[1]} channels")
        with torch.autocast(device_type=mix.device.type, enabled=False):
            outs = [
                torch.from_numpy(self.separate_track(item.float().cpu().numpy(), mix.device))
                for item in mix
            ]
        return torch.stack(outs).to(mix.device)


def build_mdx(path: Path, params: Mapping[str, Any]) -> MDXNet:
    """The `mdx` factory: an ONNX file and its model data (+ audio-separator settings)."""
    settings = MDXSettings.from_params(params)
    primary, secondary = stem_pair(params)
    return MDXNet(OnnxNetwork(Path(path)), settings, primary, secondary)
