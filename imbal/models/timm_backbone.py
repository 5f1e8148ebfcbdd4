"""``model=timm``: any timm image model as a feature backbone (``model.name=<timm model name>``).

``timm.create_model(name, num_classes=0, in_chans=C)`` drops the classifier and keeps timm's
global pooling, so the backbone returns pooled features ``[N, num_features]`` and the task adds
its own head.  Weights: random (default), ``model.pretrained=true`` (timm's hub download; needs
the network) or ``model.weights=<local .safetensors/.pth/.bin>`` (a timm state dict of the same
model, classifier keys dropped, loaded strictly).  Extra keys of the node (``+model.drop_path_rate=0.1``,
``+model.img_size=32`` for a ViT) go to ``timm.create_model``.
"""

from __future__ import annotations

import difflib
from typing import Any, Sequence

from torch import Tensor, nn

from imbal.errors import ImbalError
from imbal.models import finetune


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def check_model_name(model_name: str) -> None:
    """Refuse a name timm does not know, with a few close matches."""
    import timm

    if timm.is_model(model_name):
        return
    names = timm.list_models()
    close = difflib.get_close_matches(model_name, names, n=5, cutoff=0.6)
    part = model_name.split("_")[0].split(".")[0]
    close += [n for n in timm.list_models(f"*{part}*") if n not in close][: max(0, 5 - len(close))]
    hint = f"; close matches: {', '.join(close)}" if close else "; see timm.list_models()"
    raise ImbalError(f"model.name={model_name}: not a timm model{hint}")


class TimmBackbone(nn.Module):
    """A timm model without its classifier: ``[N, C, H, W]`` -> pooled features ``[N, out_features]``.

    Args:
        model_name: a timm model name (``timm.list_models()``), e.g. ``resnet18``, ``convnext_atto``.
        in_shape: ``[C, H, W]`` of one input (injected): ``C`` is timm's ``in_chans``; a model with a
            fixed input size (a ViT's patch embedding) must match ``H, W``.
        pretrained: download timm's pretrained weights (hub; needs the network).
        weights: a local weights file of this timm model (its classifier keys are dropped).
        **timm_kwargs: passed to ``timm.create_model``.

    ``finetune_stages`` are timm's coarse parameter groups (``model.group_matcher(coarse=True)``:
    ResNet stem, layer1 .. layer4; ViT patch embedding, then each block), used by ``model.freeze=<k>``.
    """

    #: the initial-weights keys and their "no weights" values (build_task(..., load_weights=False))
    weight_keys = {"pretrained": False, "weights": None}

    def __init__(
        self,
        *,
        model_name: str,
        in_shape: Sequence[int] = (3, 224, 224),
        pretrained: bool = False,
        weights: str | None = None,
        **timm_kwargs: Any,
    ):
        super().__init__()
        import timm

        check_model_name(model_name)
        if pretrained and weights:
            raise ImbalError(f"model.pretrained=true and model.weights={weights}: give one of them")
        self.model_name = model_name
        kwargs = dict(num_classes=0, in_chans=int(in_shape[0]), **timm_kwargs)
        self.model = timm.create_model(model_name, pretrained=False, **kwargs)
        self._check_input_size(in_shape)
        if pretrained:
            try:
                pre = timm.create_model(model_name, pretrained=True, **kwargs)
            except Exception as exc:  # noqa: BLE001 - hub, HTTP and offline errors have no common base
                raise ImbalError(
                    f"model.pretrained=true: could not download the weights of timm model '{model_name}' "
                    f"(no network?): {_first_line(exc)}; give model.weights=<local file>"
                ) from None
            self.model.load_state_dict(pre.state_dict())
        elif weights:
            self.load_weights(weights)
        self.out_features = int(self.model.num_features)

    def _check_input_size(self, in_shape: Sequence[int]) -> None:
        patch_embed = getattr(self.model, "patch_embed", None)
        fixed = None
        if patch_embed is not None and getattr(patch_embed, "strict_img_size", False) and getattr(patch_embed, "img_size", None):
            fixed = tuple(int(s) for s in patch_embed.img_size)
        elif self.model.pretrained_cfg.get("fixed_input_size"):
            fixed = tuple(int(s) for s in self.model.pretrained_cfg["input_size"][-2:])
        if fixed and len(in_shape) == 3 and tuple(int(s) for s in in_shape[1:]) != fixed:
            h, w = (int(s) for s in in_shape[1:])
            raise ImbalError(
                f"model.name={self.model_name}: timm model takes {fixed[0]}x{fixed[1]} inputs, the data gives "
                f"{h}x{w}; resize the data or set +model.img_size={h}"
            )

    def classifier_keys(self) -> tuple[str, ...]:
        """Prefixes of the classifier's keys in a full timm state dict (dropped from a weights file)."""
        cls = self.model.pretrained_cfg.get("classifier") or ()
        return (cls,) if isinstance(cls, str) else tuple(cls)

    def load_weights(self, path: str) -> None:
        """Load a local weights file of this model strictly (after dropping the classifier keys)."""
        state = finetune.read_state_dict(path, "model.weights")
        prefixes = tuple(f"{c}." for c in self.classifier_keys())
        own = self.model.state_dict()
        state = {k: v for k, v in state.items() if k in own or not k.startswith(prefixes)}
        finetune.load_strict(self.model, state, key="model.weights", path=path, what=f"timm model '{self.model_name}'")

    def finetune_stages(self) -> list[list[str]]:
        from timm.models import group_parameters

        groups = group_parameters(self.model, self.model.group_matcher(coarse=True))
        return [[f"model.{n}" for n in names] for names in groups.values()]

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)
