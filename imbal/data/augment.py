"""Training augmentation of the image classification data: ``data.augment`` and ``data.cutout``.

One builder, :func:`train_transform`, gives the torchvision.transforms.v2 training
pipeline of ``cifar10_lt`` / ``cifar100_lt`` / ``image_folder_lt`` for a name:

* ``basic`` (the default): pad + random crop + horizontal flip (CIFAR: ``RandomCrop(32,
  padding=4)``, the LDAM reference code's ``transform_train``), exactly the pipeline
  these modules had before the other names existed;
* ``autoaugment``: ``basic`` + ``v2.AutoAugment`` with the CIFAR-10 policy on CIFAR data
  (Cubuk et al. 2019; used for CIFAR-100 too, as in the papers), the ImageNet policy on
  image folders;
* ``randaugment``: ``basic`` + ``v2.RandAugment(num_ops=data.randaugment_n,
  magnitude=data.randaugment_m)`` (torchvision's defaults 2 and 9);
* ``trivialaugment``: ``basic`` + ``v2.TrivialAugmentWide``;
* ``none``: no augmentation (``data.augment=false`` means ``none``, ``true`` ``basic``).

``data.cutout`` (null or a side in pixels, 16 for CIFAR: DeVries & Taylor 2017) adds
:class:`Cutout` last: one square of zeros per image, its centre uniform over the image,
so a hole may extend beyond the border and is clipped there (the paper's code). The
square is ``size`` pixels wide (rows ``cy - size // 2`` to ``cy - size // 2 + size - 1``;
the paper's code gives ``2 * (size // 2)``, the same for even sizes). It is our own small
transform, not ``RandomErasing`` (which cannot draw a fixed-size square that leaves the image).
Order, as in the AutoAugment and Cutout papers' CIFAR pipelines: crop/flip, policy,
``ToDtype`` + ``Normalize``, cutout (the hole is 0 after normalisation: the mean colour).

Randomness: on the DataLoader path every transform draws from torch's global RNG, which
the training workers seed from ``(seed, epoch, rank, worker)``
(:class:`imbal.data.loaders.EpochWorkerSeed`), so a resumed run draws the same.

``data.on_device`` (:class:`imbal.data.on_device.PadCropFlipNormalize`): crop/flip,
normalisation and cutout are batched and per sample (one offset, flip and hole per
image, drawn from the loader's ``(seed, epoch, rank)`` generator); the policy is
per sample too, by a Python loop over the batch on the device (:func:`policy_per_sample`):
a v2 policy given a whole batch would apply one random op to every image of it.  The loop
costs a few small kernels per image: fine for moderate batch sizes.  Its random choices
come from torch's CPU generator, seeded per batch from the loader's generator inside
``torch.random.fork_rng`` (the global RNG stream is left as it was).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

from imbal.errors import ImbalError

if TYPE_CHECKING:  # torch is imported where it is used: validate.py reads the names without it
    import torch
    from torch import Tensor

POLICIES = ("basic", "autoaugment", "randaugment", "trivialaugment")
CHOICES = (*POLICIES, "none")
EXPECTED = f"one of {', '.join(CHOICES)} (true = basic, false = none)"
CUTOUT_EXPECTED = "null or an integer >= 1 (side of the square in pixels; 16 for CIFAR)"
N_EXPECTED = "an integer >= 1 (RandAugment's ops per image)"
M_EXPECTED = "an integer in [0, 30] (RandAugment's magnitude)"


def _shown(value: Any) -> str:
    """A value as written on the command line (as imbal.runner.validate shows it)."""
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, str) else str(value)


def augment_name(value: Any) -> str:
    """The ``data.augment`` name of a config value: a name of :data:`CHOICES`, or true / false."""
    if value is True:
        return "basic"
    if value is False or value is None:
        return "none"
    if isinstance(value, str) and value in CHOICES:
        return value
    raise ImbalError(f"data.augment={_shown(value)}: expected {EXPECTED}")


def valid_augment(value: Any) -> bool:
    try:
        augment_name(value)
    except ImbalError:
        return False
    return True


def check_cutout(value: Any) -> int | None:
    """``data.cutout``: null, or the side of the square in pixels (an integer >= 1)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ImbalError(f"data.cutout={_shown(value)}: expected {CUTOUT_EXPECTED}")
    return int(value)


def check_randaugment(num_ops: Any, magnitude: Any) -> tuple[int, int]:
    """``data.randaugment_n`` (>= 1) and ``data.randaugment_m`` (0..30: RandAugment's 31 bins)."""
    for key, v, lo, hi, want in (("randaugment_n", num_ops, 1, None, N_EXPECTED),
                                 ("randaugment_m", magnitude, 0, 30, M_EXPECTED)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
            raise ImbalError(f"data.{key}={_shown(v)}: expected {want}")
    return int(num_ops), int(magnitude)


#: the ``data`` keys of this module; only data modules with ``augment_policies`` take them all
KEYS = ("augment", "cutout", "randaugment_n", "randaugment_m")
POLICY_DATA = "cifar10_lt, cifar100_lt, image_folder_lt"


def check_config(cfg: Any) -> None:
    """The augmentation keys on data that cannot honour them, in one line before anything is built:
    a policy name or cutout needs a module with ``augment_policies``; the segmentation modules take
    ``augment`` true / false only; a module without an ``augment`` argument takes none of the keys."""
    import inspect

    data = cfg.get("data") if hasattr(cfg, "get") else None
    present = [k for k in KEYS if data is not None and k in data and data.get(k) is not None]
    if not present:
        return
    try:
        from hydra.utils import get_class

        cls = get_class(str(data.get("_target_")))
    except Exception:  # an unknown class: instantiate gives its own message
        return
    if getattr(cls, "augment_policies", False):
        return
    name = data.get("name", data.get("_target_"))
    # the argument may sit in a base class's __init__ (the segmentation subclasses pass **kwargs on)
    takes_flag = any("augment" in inspect.signature(k.__init__).parameters for k in cls.__mro__ if "__init__" in vars(k))
    for key in present:
        value = data.get(key)
        if key == "augment" and takes_flag:
            if isinstance(value, bool):
                continue
            raise ImbalError(f"data.augment={_shown(value)}: data '{name}' takes only true or false (augmentation "
                             f"policies {', '.join(POLICIES[1:])} are for {POLICY_DATA})")
        raise ImbalError(f"data.{key}={_shown(value)}: data '{name}' has no {key} option (data.augment policies, "
                         f"data.cutout and data.randaugment_n/_m are for {POLICY_DATA})")


# -- cutout -------------------------------------------------------------
def cutout_mask(cy: Tensor, cx: Tensor, size: int, h: int, w: int) -> Tensor:
    """Bool ``[N, 1, H, W]``: True inside the ``size`` x ``size`` square at centre ``(cy[i], cx[i])``,
    clipped at the borders (rows ``cy - size // 2`` .. ``cy - size // 2 + size - 1``)."""
    import torch

    y0 = (cy - size // 2).view(-1, 1)
    x0 = (cx - size // 2).view(-1, 1)
    rows = torch.arange(h, device=cy.device).view(1, h)
    cols = torch.arange(w, device=cx.device).view(1, w)
    in_r = (rows >= y0) & (rows < y0 + size)  # [N, H]
    in_c = (cols >= x0) & (cols < x0 + size)  # [N, W]
    return (in_r.view(-1, 1, h, 1) & in_c.view(-1, 1, 1, w))


def cutout_batch(x: Tensor, size: int, generator: torch.Generator | None = None) -> Tensor:
    """One hole per image of ``x`` ``[N, C, H, W]``; centres uniform, drawn from ``generator``."""
    import torch

    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n,), device=x.device, generator=generator)
    cx = torch.randint(0, w, (n,), device=x.device, generator=generator)
    return x.masked_fill(cutout_mask(cy, cx, size, h, w), 0)


class Cutout:
    """Per-image cutout (DeVries & Taylor 2017) of a ``[C, H, W]`` tensor: the centre row, then
    the centre column, drawn with ``torch.randint`` from the global RNG; zeros in the square."""

    def __init__(self, size: int):
        self.size = int(size)

    def __repr__(self) -> str:
        return f"Cutout(size={self.size})"

    def __call__(self, x: Tensor) -> Tensor:
        import torch

        h, w = x.shape[-2:]
        cy = torch.randint(0, h, (1,))
        cx = torch.randint(0, w, (1,))
        mask = cutout_mask(cy, cx, self.size, h, w)[0].to(x.device)
        return x.masked_fill(mask, 0)


# -- policies -------------------------------------------------------------
def policy_transform(name: str, *, cifar: bool, randaugment_n: int = 2, randaugment_m: int = 9):
    """The v2 policy of ``name`` (None for ``basic`` / ``none``)."""
    from torchvision.transforms import v2

    if name == "autoaugment":
        return v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10 if cifar else v2.AutoAugmentPolicy.IMAGENET)
    if name == "randaugment":
        return v2.RandAugment(num_ops=randaugment_n, magnitude=randaugment_m)
    if name == "trivialaugment":
        return v2.TrivialAugmentWide()
    return None


def train_transform(name: Any, *, size: int, padding: int, mean: Sequence[float], std: Sequence[float],
                    cifar: bool, cutout: int | None = None, randaugment_n: int = 2, randaugment_m: int = 9,
                    pre: Sequence[Callable] = ()):
    """The v2 training pipeline: ``pre`` (decoding, resizing), crop/flip, policy, normalise, cutout."""
    import torch
    from torchvision.transforms import v2

    name = augment_name(name)
    steps = list(pre)
    if name != "none":
        steps += [v2.RandomCrop(size, padding=padding), v2.RandomHorizontalFlip()]
    policy = policy_transform(name, cifar=cifar, randaugment_n=randaugment_n, randaugment_m=randaugment_m)
    if policy is not None:
        steps.append(policy)
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    if cutout:
        steps.append(Cutout(cutout))
    return v2.Compose(steps)


def policy_per_sample(policy: Callable[[Tensor], Tensor], x: Tensor,
                      generator: torch.Generator | None = None) -> Tensor:
    """``policy`` applied to each uint8 image of ``x`` ``[N, C, H, W]`` on its device (one random op
    choice per image).  The CPU generator the v2 policies draw from is seeded from ``generator``
    inside ``fork_rng``, so the batch depends only on ``generator`` and the global stream is untouched."""
    import torch

    seed = int(torch.randint(0, 2**62, (1,), device=x.device, generator=generator).item())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.stack([policy(img) for img in x])
