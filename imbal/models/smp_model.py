"""``model=smp``: a segmentation_models_pytorch model (U-Net, U-Net++, FPN, DeepLabV3+, Linknet)
with any smp encoder or ``tu-<timm name>`` encoder, one logit channel per pixel.

Encoder weights: ``null`` (random), ``imagenet`` (smp's hub download; needs the network) or a
local weights file of the encoder (loaded into ``model.encoder`` with strict key checking; a full
torchvision / timm ResNet state dict works for the ResNet encoders, whose ``fc`` keys smp drops).
Inputs whose sides are not multiples of ``2 ** encoder_depth`` (32 by default) are
reflect-padded and the logits cropped back, as the home U-Net does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from imbal.errors import ImbalError
from imbal.models import finetune
from imbal.models.unet import prior_bias

ARCHS = ("Unet", "UnetPlusPlus", "FPN", "DeepLabV3Plus", "Linknet")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class SmpModel(nn.Module):
    """``segmentation_models_pytorch.create_model(arch, encoder, ...)``: ``[N, C, H, W]`` -> logits ``[N, 1, H, W]``.

    Args:
        arch: one of :data:`ARCHS`.
        encoder: an smp encoder name (``resnet18``, ``efficientnet-b0``, ...) or ``tu-<timm model>``.
        encoder_weights: ``null``, ``imagenet`` or a local weights file of the encoder.
        in_shape: ``[C, H, W]`` of one input (injected; ``C`` is smp's ``in_channels``).
        num_classes: classes of the data (injected); 1 or 2 give one logit channel.
        encoder_depth: encoder stages used (smp's default 5); inputs are padded to multiples of ``2 ** depth``.
        prior: initial foreground probability of every pixel (the output bias starts at
            ``-log((1 - prior) / prior)``, as the home U-Net's); ``auto``: the training pixels'
            foreground share; null: smp's initialisation.
        stats: the data's statistics (injected; read by ``prior: auto``).
        **smp_kwargs: passed to ``segmentation_models_pytorch.create_model``.

    ``model.freeze`` covers the encoder (``finetune_body``); ``model.freeze=<k>`` freezes the first
    ``k`` encoder stages: its top-level modules holding parameters, a norm layer with the one
    before it (ResNet: stem, layer1 .. layer4; the same for a ``tu-`` encoder's timm model).
    """

    #: the task uses the output as logits (no classifier head)
    outputs_logits = True
    #: what model.freeze=true freezes and optimizer.backbone_lr_mult scales
    finetune_body = "model.encoder"
    #: the initial-weights keys and their "no weights" values (build_task(..., load_weights=False))
    weight_keys = {"encoder_weights": None}

    def __init__(
        self,
        *,
        arch: str = "Unet",
        encoder: str = "resnet18",
        encoder_weights: str | None = None,
        in_shape: Sequence[int] = (3, 256, 256),
        num_classes: int = 1,
        encoder_depth: int = 5,
        prior: float | str | None = 0.01,
        stats: Any = None,
        **smp_kwargs: Any,
    ):
        super().__init__()
        import segmentation_models_pytorch as smp

        if arch not in ARCHS:
            raise ImbalError(f"model.arch={arch}: expected one of {', '.join(ARCHS)}")
        self.encoder_name = encoder
        self._check_encoder(encoder)
        # a name of smp's weights (imagenet, ssl, ...) is downloaded; a path is a local file
        remote = encoder_weights is True or (
            isinstance(encoder_weights, str) and not Path(encoder_weights).suffix and "/" not in encoder_weights
        )
        self.out_features = 1 if int(num_classes) <= 2 else int(num_classes)
        kwargs = dict(encoder_name=encoder, in_channels=int(in_shape[0]), classes=self.out_features,
                      encoder_depth=int(encoder_depth), **smp_kwargs)
        hub = (True if encoder.startswith("tu-") or encoder_weights is True else encoder_weights) if remote else None
        try:
            self.model = smp.create_model(arch, encoder_weights=hub, **kwargs)
        except KeyError as exc:  # smp: a weights name this encoder does not have
            raise ImbalError(f"model.encoder_weights={encoder_weights}: {_first_line(exc).strip(chr(34) + chr(39))}") from None
        except Exception as exc:  # noqa: BLE001 - hub, HTTP and offline errors have no common base
            if not remote:
                raise
            raise ImbalError(
                f"model.encoder_weights={encoder_weights}: could not download the weights of encoder '{encoder}' "
                f"(no network?): {_first_line(exc)}; give model.encoder_weights=<local file>"
            ) from None
        if encoder_weights and not remote:
            state = finetune.read_state_dict(encoder_weights, "model.encoder_weights")
            state = {k: v for k, v in state.items() if k not in ("fc.weight", "fc.bias")}  # a full ResNet's classifier
            if encoder.startswith("tu-") and not any(k.startswith("model.") for k in state):
                state = {f"model.{k}": v for k, v in state.items()}  # a plain timm state dict
            finetune.load_strict(self.model.encoder, state, key="model.encoder_weights", path=str(encoder_weights),
                                 what=f"smp encoder '{encoder}'")
        bias = prior_bias(prior, stats)
        if bias is not None:
            nn.init.constant_(self.model.segmentation_head[0].bias, bias)
        self.multiple = max(2 ** int(encoder_depth), int(getattr(self.model.encoder, "output_stride", 1)))

    @staticmethod
    def _check_encoder(encoder: str) -> None:
        import difflib

        from segmentation_models_pytorch.encoders import get_encoder_names

        if encoder.startswith("tu-"):
            from imbal.models.timm_backbone import check_model_name

            try:
                check_model_name(encoder[3:].split(".")[0])
            except ImbalError as exc:
                raise ImbalError(f"model.encoder={encoder}: {str(exc).split(': ', 1)[1]}") from None
            return
        names = get_encoder_names()
        if encoder not in names:
            close = difflib.get_close_matches(encoder, names, n=5, cutoff=0.6)
            hint = f"close matches: {', '.join(close)}; " if close else ""
            raise ImbalError(f"model.encoder={encoder}: not an smp encoder; {hint}or tu-<timm model name>")

    def finetune_stages(self) -> list[list[str]]:
        enc = self.model.encoder
        inner = getattr(enc, "model", None)  # a tu- encoder wraps the timm model
        if isinstance(inner, nn.Module):
            return finetune.child_stages(inner, "model.encoder.model.")
        return finetune.child_stages(enc, "model.encoder.")

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
        return self.model(x)[..., :h, :w]
