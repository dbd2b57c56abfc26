"""UVR's VR Architecture networks, with the state-dict layout of UVR's `.pth` files.

Two families: the older `nets` (CascadedASPPNet; capacity 16/32/64 channels and a
5/6/7-branch ASPP, which UVR picks from the file's size) and `nets_new` (CascadedNet,
VR 5.1, with LSTM; `nout`/`nout_lstm` from the model data). Here the family and its
capacity are read from the state dict's keys and shapes, which is what the file-size
rule approximates. Each returns a mask [B, 2, bins + 1, frames - 2 * offset].
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias

import torch
import torch.nn.functional as F
from torch import nn

from stemsplit.errors import ModelError
from stemsplit.models.ops import LSTM


class ConvBNAct(nn.Module):
    def __init__(self, nin: int, nout: int, ksize: int = 3, stride: int = 1, pad: int = 1,
                 dilation: int = 1, activ: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(nin, nout, ksize, stride, pad, dilation, bias=False), nn.BatchNorm2d(nout),
            activ(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SepConvBNAct(nn.Module):
    def __init__(self, nin: int, nout: int, ksize: int, pad: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(nin, nin, ksize, 1, pad, dilation, groups=nin, bias=False),
            nn.Conv2d(nin, nout, 1, bias=False), nn.BatchNorm2d(nout), nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def crop_center(skip: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if skip.shape[3] == like.shape[3]:
        return skip
    if skip.shape[3] < like.shape[3]:
        raise ValueError("window size error: h1_shape[3] must be greater than h2_shape[3]")
    start = (skip.shape[3] - like.shape[3]) // 2
    return skip[:, :, :, start : start + like.shape[3]]


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


# ---- nets (v4/v5 CascadedASPPNet) ----

class OldEncoder(nn.Module):
    def __init__(self, nin: int, nout: int) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(nin, nout, 3, 1, 1, activ=nn.LeakyReLU)
        self.conv2 = ConvBNAct(nout, nout, 3, 2, 1, activ=nn.LeakyReLU)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.conv1(x)
        return self.conv2(skip), skip


class Decoder(nn.Module):
    def __init__(self, nin: int, nout: int, attr: str = "conv") -> None:
        super().__init__()
        self.attr = attr
        setattr(self, attr, ConvBNAct(nin, nout, 3, 1, 1))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = _up(x)
        if skip is not None:
            x = torch.cat([x, crop_center(skip, x)], dim=1)
        return getattr(self, self.attr)(x)


class OldASPP(nn.Module):
    def __init__(self, nin: int, nout: int, branches: int, dilations=(4, 8, 16)) -> None:
        super().__init__()
        self.branches = branches
        self.conv1 = nn.Sequential(nn.AdaptiveAvgPool2d((1, None)), ConvBNAct(nin, nin, 1, 1, 0))
        self.conv2 = ConvBNAct(nin, nin, 1, 1, 0)
        self.conv3 = SepConvBNAct(nin, nin, 3, dilations[0], dilations[0])
        self.conv4 = SepConvBNAct(nin, nin, 3, dilations[1], dilations[1])
        self.conv5 = SepConvBNAct(nin, nin, 3, dilations[2], dilations[2])
        if branches >= 6:  # UVR shares one module between conv6 and conv7
            extra = SepConvBNAct(nin, nin, 3, dilations[2], dilations[2])
            self.conv6 = extra
            if branches == 7:
                self.conv7 = extra
        self.bottleneck = nn.Sequential(ConvBNAct(nin * branches, nout, 1, 1, 0), nn.Dropout2d(0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        feats = [F.interpolate(self.conv1(x), size=(h, w), mode="bilinear", align_corners=True)]
        feats += [getattr(self, f"conv{i}")(x) for i in range(2, self.branches + 1)]
        return self.bottleneck(torch.cat(feats, dim=1))


class BaseASPPNet(nn.Module):
    def __init__(self, nin: int, ch: int, branches: int, deep: bool) -> None:
        super().__init__()
        self.deep = deep
        self.enc1, self.enc2 = OldEncoder(nin, ch), OldEncoder(ch, ch * 2)
        self.enc3, self.enc4 = OldEncoder(ch * 2, ch * 4), OldEncoder(ch * 4, ch * 8)
        if deep:
            self.enc5 = OldEncoder(ch * 8, ch * 16)
            self.aspp = OldASPP(ch * 16, ch * 32, branches)
            self.dec5 = Decoder(ch * (16 + 32), ch * 16)
        else:
            self.aspp = OldASPP(ch * 8, ch * 16, branches)
        self.dec4 = Decoder(ch * (8 + 16), ch * 8)
        self.dec3 = Decoder(ch * (4 + 8), ch * 4)
        self.dec2 = Decoder(ch * (2 + 4), ch * 2)
        self.dec1 = Decoder(ch * (1 + 2), ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, e1 = self.enc1(x)
        h, e2 = self.enc2(h)
        h, e3 = self.enc3(h)
        h, e4 = self.enc4(h)
        if self.deep:
            h, e5 = self.enc5(h)
            h = self.dec5(self.aspp(h), e5)
        else:
            h = self.aspp(h)
        return self.dec1(self.dec2(self.dec3(self.dec4(h, e4), e3), e2), e1)


class CascadedASPPNet(nn.Module):
    offset = 128

    def __init__(self, n_fft: int, ch: int, branches: int, deep: bool) -> None:
        super().__init__()
        self.stg1_low_band_net = BaseASPPNet(2, ch, branches, deep)
        self.stg1_high_band_net = BaseASPPNet(2, ch, branches, deep)
        self.stg2_bridge = ConvBNAct(ch + 2, ch // 2, 1, 1, 0)
        self.stg2_full_band_net = BaseASPPNet(ch // 2, ch, branches, deep)
        self.stg3_bridge = ConvBNAct(2 * ch + 2, ch, 1, 1, 0)
        self.stg3_full_band_net = BaseASPPNet(ch, ch * 2, branches, deep)
        self.out = nn.Conv2d(ch * 2, 2, 1, bias=False)
        self.aux1_out = nn.Conv2d(ch, 2, 1, bias=False)
        self.aux2_out = nn.Conv2d(ch, 2, 1, bias=False)
        self.max_bin = n_fft // 2
        self.output_bin = n_fft // 2 + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, : self.max_bin]
        band = x.shape[2] // 2
        aux1 = torch.cat([self.stg1_low_band_net(x[:, :, :band]),
                          self.stg1_high_band_net(x[:, :, band:])], dim=2)  # fmt: skip
        aux2 = self.stg2_full_band_net(self.stg2_bridge(torch.cat([x, aux1], dim=1)))
        h = self.stg3_full_band_net(self.stg3_bridge(torch.cat([x, aux1, aux2], dim=1)))
        mask = torch.sigmoid(self.out(h))
        return F.pad(mask, (0, 0, 0, self.output_bin - mask.shape[2]), mode="replicate")

    def predict_mask(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)[:, :, :, self.offset : -self.offset]


# ---- nets_new (VR 5.1 CascadedNet) ----

class NewEncoder(nn.Module):
    def __init__(self, nin: int, nout: int) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(nin, nout, 3, 2, 1, activ=nn.LeakyReLU)
        self.conv2 = ConvBNAct(nout, nout, 3, 1, 1, activ=nn.LeakyReLU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class NewASPP(nn.Module):
    def __init__(self, nin: int, nout: int, dilations=((4, 2), (8, 4), (12, 6))) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.AdaptiveAvgPool2d((1, None)), ConvBNAct(nin, nout, 1, 1, 0))
        self.conv2 = ConvBNAct(nin, nout, 1, 1, 0)
        self.conv3 = ConvBNAct(nin, nout, 3, 1, dilations[0], dilations[0])
        self.conv4 = ConvBNAct(nin, nout, 3, 1, dilations[1], dilations[1])
        self.conv5 = ConvBNAct(nin, nout, 3, 1, dilations[2], dilations[2])
        self.bottleneck = ConvBNAct(nout * 5, nout, 1, 1, 0)
        self.dropout = nn.Dropout2d(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        feats = [F.interpolate(self.conv1(x), size=(h, w), mode="bilinear", align_corners=True)]
        feats += [self.conv2(x), self.conv3(x), self.conv4(x), self.conv5(x)]
        return self.dropout(self.bottleneck(torch.cat(feats, dim=1)))


class LSTMModule(nn.Module):
    def __init__(self, nin_conv: int, nin_lstm: int, nout_lstm: int) -> None:
        super().__init__()
        self.conv = ConvBNAct(nin_conv, 1, 1, 1, 0)
        self.lstm = LSTM(input_size=nin_lstm, hidden_size=nout_lstm // 2, bidirectional=True)
        self.dense = nn.Sequential(nn.Linear(nout_lstm, nin_lstm), nn.BatchNorm1d(nin_lstm),
                                   nn.ReLU())  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, nbins, nframes = x.shape
        h = self.conv(x)[:, 0].permute(2, 0, 1)  # frames, N, bins
        h, _ = self.lstm(h)
        h = self.dense(h.reshape(-1, h.shape[-1])).reshape(nframes, n, 1, nbins)
        return h.permute(1, 2, 3, 0)


class BaseNet(nn.Module):
    def __init__(self, nin: int, nout: int, nin_lstm: int, nout_lstm: int) -> None:
        super().__init__()
        self.enc1 = ConvBNAct(nin, nout, 3, 1, 1)
        self.enc2, self.enc3 = NewEncoder(nout, nout * 2), NewEncoder(nout * 2, nout * 4)
        self.enc4, self.enc5 = NewEncoder(nout * 4, nout * 6), NewEncoder(nout * 6, nout * 8)
        self.aspp = NewASPP(nout * 8, nout * 8)
        self.dec4 = Decoder(nout * (6 + 8), nout * 6, "conv1")
        self.dec3 = Decoder(nout * (4 + 6), nout * 4, "conv1")
        self.dec2 = Decoder(nout * (2 + 4), nout * 2, "conv1")
        self.lstm_dec2 = LSTMModule(nout * 2, nin_lstm, nout_lstm)
        self.dec1 = Decoder(nout * (1 + 2) + 1, nout, "conv1")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        e4 = self.enc4(e3)
        h = self.aspp(self.enc5(e4))
        h = self.dec2(self.dec3(self.dec4(h, e4), e3), e2)
        h = torch.cat([h, self.lstm_dec2(h)], dim=1)
        return self.dec1(h, e1)


class CascadedNet(nn.Module):
    offset = 64

    def __init__(self, n_fft: int, nout: int = 32, nout_lstm: int = 128) -> None:
        super().__init__()
        self.max_bin = n_fft // 2
        self.output_bin = n_fft // 2 + 1
        lstm = self.max_bin // 2
        self.stg1_low_band_net = nn.Sequential(BaseNet(2, nout // 2, lstm // 2, nout_lstm),
                                               ConvBNAct(nout // 2, nout // 4, 1, 1, 0))
        self.stg1_high_band_net = BaseNet(2, nout // 4, lstm // 2, nout_lstm // 2)
        self.stg2_low_band_net = nn.Sequential(BaseNet(nout // 4 + 2, nout, lstm // 2, nout_lstm),
                                               ConvBNAct(nout, nout // 2, 1, 1, 0))
        self.stg2_high_band_net = BaseNet(nout // 4 + 2, nout // 2, lstm // 2, nout_lstm // 2)
        self.stg3_full_band_net = BaseNet(3 * nout // 4 + 2, nout, lstm, nout_lstm)
        self.out = nn.Conv2d(nout, 2, 1, bias=False)
        self.aux_out = nn.Conv2d(3 * nout // 4, 2, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, : self.max_bin]
        band = x.shape[2] // 2
        l1_in, h1_in = x[:, :, :band], x[:, :, band:]
        l1, h1 = self.stg1_low_band_net(l1_in), self.stg1_high_band_net(h1_in)
        l2 = self.stg2_low_band_net(torch.cat([l1_in, l1], dim=1))
        h2 = self.stg2_high_band_net(torch.cat([h1_in, h1], dim=1))
        f3 = torch.cat([x, torch.cat([l1, h1], dim=2), torch.cat([l2, h2], dim=2)], dim=1)
        mask = torch.sigmoid(self.out(self.stg3_full_band_net(f3)))
        return F.pad(mask, (0, 0, 0, self.output_bin - mask.shape[2]), mode="replicate")

    def predict_mask(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)[:, :, :, self.offset : -self.offset]


# UVR's size classes of the old nets: first-layer width, ASPP branches, extra level.
_OLD_CAPACITY = {31191: (16, 5, False), 33966: (16, 7, False), 129605: (16, 6, True),
                 123821: (32, 5, False), 123812: (32, 5, False), 537238: (64, 7, False),
                 537227: (64, 7, False)}  # fmt: skip


def build_vr_network(bins: int, nout: int | None, nout_lstm: int | None, kind: str,
                     nn_arch_size: int | None = None) -> nn.Module:
    """A VR net for a modelparams `bins`: kind "nets" (by UVR size class) or "nets_new"."""
    n_fft = bins * 2
    if kind == "nets_new":
        return CascadedNet(n_fft, nout or 32, nout_lstm or 128)
    ch, branches, deep = _OLD_CAPACITY[nn_arch_size or 31191]
    return CascadedASPPNet(n_fft, ch, branches, deep)


VRNetwork: TypeAlias = "CascadedASPPNet | CascadedNet"
"""The networks `network_from_state` builds (both have `offset` and `predict_mask`)."""


def network_from_state(state: Mapping[str, torch.Tensor], bins: int, nout: int | None,
                       nout_lstm: int | None) -> VRNetwork:
    """The network a VR state dict was saved from, recognised by its keys and shapes."""
    if "stg1_low_band_net.0.enc1.conv.0.weight" in state:
        width = int(state["stg3_full_band_net.enc1.conv.0.weight"].shape[0])
        lstm = int(state["stg3_full_band_net.lstm_dec2.dense.0.weight"].shape[0])
        hidden = int(state["stg3_full_band_net.lstm_dec2.lstm.weight_hh_l0"].shape[1])
        if lstm != bins // 2:
            raise ModelError(f"the VR 5.1 net expects {lstm * 2} bins, its modelparams give {bins}")
        if nout is not None and nout != width:
            raise ModelError(f"model data says nout {nout}, the weights have {width}")
        return CascadedNet(bins * 2, width, nout_lstm or hidden * 2)
    if "stg1_low_band_net.enc1.conv1.conv.0.weight" in state:
        ch = int(state["stg1_low_band_net.enc1.conv1.conv.0.weight"].shape[0])
        branches = 7 if "stg1_low_band_net.aspp.conv7.conv.0.weight" in state else (
            6 if "stg1_low_band_net.aspp.conv6.conv.0.weight" in state else 5)
        deep = "stg1_low_band_net.enc5.conv1.conv.0.weight" in state
        return CascadedASPPNet(bins * 2, ch, branches, deep)
    raise ModelError("not a VR Architecture state dict (no stg1_low_band_net weights)")
