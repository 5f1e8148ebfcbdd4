"""Mixing inside the backbone: manifold mixup at a stage (Verma et al. 2019) and embedding-level mixup for text.

Both work through a forward hook that replaces a module's output ``h`` with
``lam * h + (1 - lam) * h[idx]`` for one forward pass, so no backbone needs a special forward.

**Stages.**  A backbone exposes the modules whose outputs may be mixed either itself, with a
``mixing_stages`` attribute (a list of submodule names, in order), or through the table below for
imbal's own backbones (MLP: each hidden layer's activation; SmallCNN: its two conv blocks; the CIFAR
ResNet: layer1..3; the torchvision ResNets: layer1..4; timm models: their ``feature_info`` modules,
e.g. a ResNet's stem activation and layer1..4, a ConvNeXt's stages, a ViT's blocks).  Stage 0 is the input itself; ``k >= 1`` is
the output of the k-th listed module.  A backbone with neither has no stages, and
``mixing=manifold_mixup`` is refused for it before training.

**Text.**  Token ids cannot be mixed, so mixup on text mixes the outputs of the backbone's
``nn.Embedding`` modules (all of them: the embeddings a Transformer sums, a TextCNN's static and
non-static copies), which is the same as mixing their sum.  Each sample keeps its own attention
mask (the padding of the first sample of the pair).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import Tensor, nn

from imbal.mixing.batch import mix_tensors


def _mlp(backbone: nn.Module) -> list[str]:
    return [f"net.{i}" for i, m in enumerate(backbone.net) if isinstance(m, nn.ReLU)]


def _small_cnn(backbone: nn.Module) -> list[str]:
    return [f"features.{i}" for i, m in enumerate(backbone.features) if isinstance(m, nn.Sequential)]


def _known_stages(backbone: nn.Module) -> list[str] | None:
    """imbal's own backbones' stage modules (None: not one of them)."""
    from imbal.models.resnet_cifar import ResNetCifar
    from imbal.models.resnets import TorchvisionResNet
    from imbal.models.simple import MLP, SmallCNN

    if isinstance(backbone, MLP):
        return _mlp(backbone)
    if isinstance(backbone, SmallCNN):
        return _small_cnn(backbone)
    if isinstance(backbone, ResNetCifar):
        return ["layer1", "layer2", "layer3"]
    if isinstance(backbone, TorchvisionResNet):
        return [f"net.layer{i}" for i in range(1, 5)]
    if type(backbone).__name__ == "TimmBackbone" and type(backbone).__module__ == "imbal.models.timm_backbone":
        info = getattr(backbone.model, "feature_info", None)  # timm's feature stages (no timm import here)
        return [f"model.{d['module']}" for d in info] if info else None
    return None


def stage_names(backbone: nn.Module) -> list[str]:
    """The submodule names whose outputs manifold mixup may mix, in order ([] when the backbone has none)."""
    own = getattr(backbone, "mixing_stages", None)
    if own is not None:
        return list(own() if callable(own) else own)
    return _known_stages(backbone) or []


def embedding_modules(backbone: nn.Module) -> list[nn.Module]:
    """The backbone's ``nn.Embedding`` modules (text mixing mixes their outputs)."""
    return [m for m in backbone.modules() if isinstance(m, nn.Embedding)]


@contextmanager
def mix_outputs(modules: list[nn.Module], idx: Tensor, lam: float) -> Iterator[None]:
    """While inside, each module's output ``h`` becomes ``lam * h + (1 - lam) * h[idx]``."""

    def hook(_module, _inputs, output):
        if not isinstance(output, Tensor):
            raise TypeError(f"mixing: {type(_module).__name__} returns {type(output).__name__}, not a tensor")
        return mix_tensors(output, output[idx.to(output.device)], lam)

    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
