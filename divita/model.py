"""The DIViTA head (Dual Image and Video Transformer Architecture), written for t12k.

Follows the reference trainer's architecture (github.com/richardtml/DIViTA, ``model/``):
per modality, BatchNorm over features, a clip aggregation module and a linear classifier;
two modalities are fused early (features concatenated, one head) or late (two heads, the
average of their logits). Aggregations: ``tsfm`` (the paper's transformer), ``gru``, ``conv``,
``savg`` (the paper's Table 5 alternatives) and ``ctt``, the CTT-MMC-A baseline of Table 6.

Shapes: batch ``B``, clips per snippet ``S``, features ``F``, hidden ``H``, classes ``L``.
Inputs are ``(B, S, F)``; the reference feeds ``(B, F, S)`` to its BatchNorm and
aggregation modules, so the single-modality head transposes once and then works on
``(B, F, S)`` exactly as the reference does.
"""

from __future__ import annotations

from enum import StrEnum
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn


class Modality(StrEnum):
    """What a DIViTA head sees: one modality, or both fused early or late (the value is the one
    checkpoints and logs show)."""

    IMAGE = "image"
    VIDEO = "video"
    EARLY = "early"  # features concatenated clip by clip, one head
    LATE = "late"  # an image and a video head, their logits averaged


FUSIONS = (Modality.EARLY.value, Modality.LATE.value)


class MultiHeadSelfAttention(nn.Module):
    """Scaled dot-product self-attention with ``num_heads`` heads and bias-free projections.

    As the reference: queries, keys and values are linear maps of the same sequence, split
    into heads of size ``H / num_heads``, scaled by ``sqrt(H / num_heads)``, no attention
    dropout, no mask (snippets always have ``S`` clips; padding clips are zeros).
    """

    def __init__(self, hidden: int, num_heads: int):
        super().__init__()
        if hidden % num_heads:
            raise ValueError(f"hidden size {hidden} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.q = nn.Linear(hidden, hidden, bias=False)
        self.k = nn.Linear(hidden, hidden, bias=False)
        self.v = nn.Linear(hidden, hidden, bias=False)
        self.o = nn.Linear(hidden, hidden, bias=False)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        # (B, h, S, H/h) <- (B, S, H)
        b, s, _ = x.shape
        return x.view(b, s, self.num_heads, -1).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, h = x.shape
        out = F.scaled_dot_product_attention(self._heads(self.q(x)), self._heads(self.k(x)), self._heads(self.v(x)))
        # (B, S, H) <- (B, h, S, H/h)
        return self.o(out.transpose(1, 2).reshape(b, s, h))


class TransformerBlock(nn.Module):
    """Post-norm transformer encoder block (attention and feed-forward, each residual + LayerNorm,
    dropout after each LayerNorm), as the reference's ``TransformerBlock``."""

    def __init__(self, hidden: int = 128, num_heads: int = 4, ff_mult: int = 6, dropout: float = 0.25):
        super().__init__()
        self.attention = MultiHeadSelfAttention(hidden, num_heads)
        self.norm1 = nn.LayerNorm(hidden)
        self.ff = nn.Sequential(nn.Linear(hidden, ff_mult * hidden), nn.ReLU(), nn.Linear(ff_mult * hidden, hidden))
        self.norm2 = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.norm1(x + self.attention(x)))
        return self.dropout(self.norm2(x + self.ff(x)))


class TransformerAggregation(nn.Module):
    """``tsfm``: position-wise Linear F->H, one transformer block, mean over clips."""

    def __init__(
        self, num_features: int, hidden: int = 128, num_heads: int = 4, ff_mult: int = 6, dropout: float = 0.25
    ):
        super().__init__()
        self.proj = nn.Linear(num_features, hidden)
        self.block = TransformerBlock(hidden, num_heads, ff_mult, dropout)
        self.out_features = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, F, S) -> (B, H)
        return self.block(self.proj(x.transpose(1, 2))).mean(1)


class GRUAggregation(nn.Module):
    """``gru``: one GRU layer (115 hidden), ReLU on its outputs, mean over clips."""

    def __init__(self, num_features: int, hidden: int = 115, num_layers: int = 1):
        super().__init__()
        self.gru = nn.GRU(num_features, hidden, num_layers=num_layers, batch_first=True)
        self.out_features = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, F, S) -> (B, H)
        out, _ = self.gru(x.transpose(1, 2))
        return F.relu(out).mean(1)


class ConvAggregation(nn.Module):
    """``conv``: Conv1d over clips (128 filters of size 3, padding 1), ReLU, mean over clips."""

    def __init__(self, num_features: int, filters: int = 128, size: int = 3):
        super().__init__()
        self.conv = nn.Conv1d(num_features, filters, size, stride=1, padding=size // 2)
        self.out_features = filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, F, S) -> (B, H)
        return F.relu(self.conv(x)).mean(2)


class MeanAggregation(nn.Module):
    """``savg``: mean over clips, then ReLU (no parameters)."""

    def __init__(self, num_features: int):
        super().__init__()
        self.out_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, F, S) -> (B, F)
        return F.relu(x.mean(2))


class CTTAggregation(nn.Module):
    """``ctt``: the CTT-MMC-A baseline of the paper's Table 6 (CTT-MMC-A†), as reproduced by t12k.

    Wehrmann and Barros ("Movie genre classification: a multi-label approach based on
    convolutions through time", Applied Soft Computing 61, 2017) classify a trailer from a
    sequence of frame features (ResNet, pretrained on ImageNet and Places365) with a
    "convolution through time" (CTT) block: 1D convolutions that slide along the time axis
    and span the whole feature vector, max-pooled through time, then dense layers and one
    sigmoid per genre. Neither their code nor their exact sizes are public; the DIViTA paper
    (section 6 and 7.4) reproduces the model "as faithfully as possible from the paper
    description", feeds it ImageNet-only ResNet features, and says its Conv1D aggregation
    (128 filters of size 3) is "similar to the CTT-MMC-A† aggregation strategy, but with a
    different number of filters and filter sizes". What t12k assumes from that:

    * several temporal window sizes in parallel (`sizes`, default 3, 5 and 7 clips; odd so
      zero padding keeps every clip position, and a 30-clip snippet or a shorter padded one
      both work), `filters` = 256 filters each, ReLU;
    * max pooling through time (not the mean DIViTA uses), branches concatenated;
    * dropout 0.5, one hidden dense layer (`hidden` = 512 units, ReLU, dropout 0.5); the
      head's Linear then maps to the genre logits (sigmoid at inference, BCE in training);
    * inputs are the DIViTA head's: one 30-clip snippet of clip features after BatchNorm,
      so the baseline trains and evaluates with the same protocol, as in the paper.

    The paper trains it on ResNet (ImageNet) image features; as an aggregation it can be
    selected for any modality or fusion (``--aggregation ctt``).
    """

    def __init__(
        self,
        num_features: int,
        filters: int = 256,
        sizes: tuple[int, ...] = (3, 5, 7),
        hidden: int = 512,
        dropout: float = 0.5,
    ):
        super().__init__()
        if any(k < 1 or k % 2 == 0 for k in sizes):
            raise ValueError(f"CTT window sizes must be odd and positive, got {sizes}")
        self.convs = nn.ModuleList(nn.Conv1d(num_features, filters, k, padding=k // 2) for k in sizes)
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(filters * len(sizes), hidden)
        self.out_features = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, F, S) -> (B, hidden)
        pooled = torch.cat([F.relu(conv(x)).amax(2) for conv in self.convs], dim=1)
        return self.dropout(F.relu(self.dense(self.dropout(pooled))))


# The clip aggregations by name (the registry the --aggregation choices come from).
AGGREGATIONS: dict[str, type[nn.Module]] = {
    "tsfm": TransformerAggregation,
    "gru": GRUAggregation,
    "conv": ConvAggregation,
    "savg": MeanAggregation,
    "ctt": CTTAggregation,
}


def build_aggregation(name: str, num_features: int) -> nn.Module:
    """The clip aggregation module called `name` (one of AGGREGATIONS) for `num_features` inputs."""
    if name not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {name!r}; use one of {', '.join(AGGREGATIONS)}")
    return AGGREGATIONS[name](num_features)


class SingleHead(nn.Module):
    """One modality: BatchNorm1d over features, aggregation over clips, Linear to classes."""

    def __init__(self, num_features: int, aggregation: str = "tsfm", num_classes: int = 10):
        super().__init__()
        self.num_features = num_features
        self.bn = nn.BatchNorm1d(num_features)
        self.aggregation = build_aggregation(aggregation, num_features)
        self.classifier = nn.Linear(cast(int, self.aggregation.out_features), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, S, F) -> (B, L)
        if x.ndim != 3 or x.shape[2] != self.num_features:
            raise ValueError(f"expected (batch, clips, {self.num_features}) features, got {tuple(x.shape)}")
        x = self.bn(x.transpose(1, 2))  # (B, F, S)
        return self.classifier(self.aggregation(x))


class DIViTA(nn.Module):
    """The DIViTA head for image and/or video clip features.

    One of ``image_features`` / ``video_features`` may be None (single modality). With both,
    ``fusion='early'`` concatenates the features clip by clip and uses one head;
    ``fusion='late'`` (the paper's model) averages the logits of an image and a video head.
    """

    def __init__(
        self,
        image_features: int | None,
        video_features: int | None,
        fusion: str = "late",
        aggregation: str = "tsfm",
        num_classes: int = 10,
    ):
        super().__init__()
        if not image_features and not video_features:
            raise ValueError("DIViTA needs image_features, video_features or both")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {aggregation!r}; use one of {', '.join(AGGREGATIONS)}")
        self.image_features = int(image_features) if image_features else None
        self.video_features = int(video_features) if video_features else None
        self.aggregation = aggregation
        self.num_classes = num_classes
        if self.image_features and self.video_features:
            if fusion not in FUSIONS:
                raise ValueError(f"unknown fusion {fusion!r}; use 'early' or 'late'")
            self.modality = Modality(fusion)
        else:
            self.modality = Modality.IMAGE if self.image_features else Modality.VIDEO
        self.fusion = fusion
        fi, fv = self.image_features or 0, self.video_features or 0  # 0: that modality is not used
        if self.modality == Modality.IMAGE:
            self.head = SingleHead(fi, aggregation, num_classes)
        elif self.modality == Modality.VIDEO:
            self.head = SingleHead(fv, aggregation, num_classes)
        elif self.modality == Modality.EARLY:
            self.head = SingleHead(fi + fv, aggregation, num_classes)
        else:
            self.image_head = SingleHead(fi, aggregation, num_classes)
            self.video_head = SingleHead(fv, aggregation, num_classes)

    @property
    def uses_image(self) -> bool:
        return self.image_features is not None

    @property
    def uses_video(self) -> bool:
        return self.video_features is not None

    def forward(self, image: torch.Tensor | None = None, video: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, num_classes) from image (B, S, Fi) and/or video (B, S, Fv) features."""
        if self.uses_image and image is None:
            raise ValueError("this model needs image features (image=...)")
        if self.uses_video and video is None:
            raise ValueError("this model needs video features (video=...)")
        if self.modality == Modality.IMAGE:
            return self.head(image)
        if self.modality == Modality.VIDEO:
            return self.head(video)
        assert image is not None and video is not None  # both modalities are used, checked above
        if image.shape[:2] != video.shape[:2]:
            raise ValueError(
                f"image {tuple(image.shape)} and video {tuple(video.shape)} features "
                "must have the same batch and clip dimensions"
            )
        if self.modality == Modality.EARLY:
            return self.head(torch.cat([image, video], dim=2))
        return (self.image_head(image) + self.video_head(video)) / 2

    @torch.no_grad()
    def predict(self, image: torch.Tensor | None = None, video: torch.Tensor | None = None) -> torch.Tensor:
        """Sigmoid probabilities (B, num_classes)."""
        return torch.sigmoid(self(image, video))
