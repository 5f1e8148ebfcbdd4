"""The two-stage Airbus pipeline: a ship-presence gate, a mask model with TTA, instances, one RLE row each.

Per image (uint8 ``[H, W, 3]``):

1. the gate (optional; a finished binary run, ``data=airbus data.target=presence``) gives
   P(ship); an image with P(ship) <= the gate threshold gets no instance at all;
2. the segmenter (a finished segmentation run) gives a probability map at the image's own
   size: the image is resized to the run's ``data.resize`` first when it has one, and the
   map is scaled back (nearest neighbour); with ``tta`` the mean probability over flips /
   the 8 dihedral transforms (:mod:`imbal.predict.tta`);
3. pixels with probability > ``threshold`` form instances (8-connected components, or a
   watershed split), those below ``min_size`` pixels (of the image as written) are dropped
   (:mod:`imbal.predict.instances`).

Runs are read only through :func:`imbal.load_run` (a run dir is data, not code).  Defaults of
``threshold``, ``min_size`` and the gate threshold come from ``RUN_DIR/seg_tuning.json`` when
``imbal tune-seg`` wrote one (:func:`resolve_settings`); explicit values win.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from imbal.errors import ImbalError
from imbal.kinds import BINARY, SEGMENTATION
from imbal.predict.instances import check_min_size, check_probability, instances
from imbal.predict.tta import check_mode

#: What ``imbal tune-seg`` writes into the segmenter's run dir (and ``imbal predict`` reads).
TUNING_FILE = "seg_tuning.json"
DEFAULT_THRESHOLD = 0.5
DEFAULT_MIN_SIZE = 0


def _device(device: str | None):
    import torch

    return torch.device(device) if device else torch.device("cpu")


def default_device() -> str:
    """``cuda`` when a GPU is present, else ``cpu`` (``--device`` overrides it)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _scale_prob(prob: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A float probability map scaled to ``size`` (rows, columns) by nearest neighbour."""
    from PIL import Image

    if prob.shape == tuple(size):
        return prob
    img = Image.fromarray(prob.astype(np.float32), mode="F")
    return np.asarray(img.resize((size[1], size[0]), Image.Resampling.NEAREST))


@dataclass
class Segmenter:
    """A mask model (``model(x [N,3,H,W]) -> logits [N,1,H,W]``) and the side its run resized images to."""

    model: Any
    resize: int | None = None
    device: str | None = None

    def __post_init__(self):
        self.model.eval()
        if self.device is None:
            self.device = default_device()
        self.model.to(_device(self.device))

    def probs(self, img: np.ndarray, tta: str = "none", *, image_id: str = "") -> tuple[np.ndarray, np.ndarray]:
        """(TTA-mean probability, plain probability), float32 ``[H, W]`` at the image's own size."""
        import torch

        from imbal.data.segmentation.transforms import resize_image, to_tensor_image
        from imbal.predict.tta import tta_probs

        h, w = img.shape[:2]
        x = resize_image(img, int(self.resize)) if self.resize is not None else img
        check_mode(tta, x.shape[:2], where=f"image {image_id}" if image_id else "the image")
        t = torch.from_numpy(np.ascontiguousarray(to_tensor_image(x)))[None].to(_device(self.device))
        mean, plain = tta_probs(self.model, t, tta)
        out = [p[0].cpu().numpy().astype(np.float32) for p in (mean, plain)]
        return tuple(_scale_prob(p, (h, w)) for p in out)  # type: ignore[return-value]


def presence_transform(size: int | None) -> Callable[[np.ndarray], Any]:
    """The gate's input of one uint8 image: the presence task's own eval preprocessing
    (:func:`imbal.data.segmentation.airbus.presence_input`) at the gate run's recorded ``presence_size``."""
    from imbal.data.segmentation.airbus import presence_input

    return lambda img: presence_input(img, size)


@dataclass
class Gate:
    """A ship-presence classifier: ``prob(img)`` = P(ship); images with P <= ``threshold`` are rejected."""

    model: Any
    threshold: float
    transform: Callable[[np.ndarray], Any]
    device: str | None = None
    run_dir: str = ""
    source: str = "given"

    def __post_init__(self):
        self.model.eval()
        if self.device is None:
            self.device = default_device()
        self.model.to(_device(self.device))

    def prob(self, img: np.ndarray) -> float:
        import torch

        with torch.no_grad():
            x = self.transform(img)[None].to(_device(self.device))
            return float(torch.sigmoid(self.model(x).float().reshape(-1)[0]))

    def accepts(self, prob: float) -> bool:
        return prob > self.threshold


def f2_threshold(probs: np.ndarray, targets: np.ndarray, beta: float = 2.0) -> tuple[float, float]:
    """(threshold, F2) maximising the image-level F_beta of "ship present" (``prob > threshold``).

    Candidates: the midpoints between consecutive distinct probabilities, plus one below the
    lowest (accept all) and one above the highest (reject all); ties go to the candidate
    nearest 0.5.
    """
    p = np.asarray(probs, dtype=np.float64).ravel()
    y = np.asarray(targets).ravel() > 0.5
    u = np.unique(p)
    cands = np.concatenate([[u[0] / 2], (u[1:] + u[:-1]) / 2, [(u[-1] + 1) / 2]]) if len(u) else np.array([0.5])
    b2 = beta * beta
    best = None
    for t in cands:
        pred = p > t
        tp = float((pred & y).sum())
        fp = float((pred & ~y).sum())
        fn = float((~pred & y).sum())
        denom = (1 + b2) * tp + b2 * fn + fp
        f = (1 + b2) * tp / denom if denom > 0 else 1.0
        key = (-round(f, 12), abs(t - 0.5))
        if best is None or key < best[0]:
            best = (key, float(t), f)
    return best[1], best[2]


def read_tuning(run_dir: str | Path) -> dict[str, Any] | None:
    """``RUN_DIR/seg_tuning.json`` (what ``imbal tune-seg`` chose), or None when there is none."""
    from imbal.io import read_json_object

    path = Path(run_dir) / TUNING_FILE
    return read_json_object(path, expected="written by imbal tune-seg") if path.is_file() else None


def check_segmenter_run(run_dir: str | Path) -> None:
    from imbal.runner.rundir import read_stats

    task = read_stats(Path(run_dir)).task
    if task != SEGMENTATION:
        raise ImbalError(f"predict: run dir {run_dir} is a {task} run (data_stats.json task '{task}'); "
                         f"imbal predict writes mask submissions and needs a {SEGMENTATION} run (data=airbus, "
                         "data=mask_folder); for other runs use imbal.load_run(run_dir).model")


def run_resize(config: dict, run_dir: str | Path) -> int | None:
    data = config.get("data")
    resize = data.get("resize") if isinstance(data, dict) else None
    if resize is not None and (isinstance(resize, bool) or not isinstance(resize, int) or resize < 1):
        raise ImbalError(f"predict: run dir {run_dir}: summary.json config.data.resize={resize!r}; "
                         "expected a positive integer or null")
    return resize


def load_segmenter(run_dir: str | Path, *, trust_config: bool = False, device: str | None = None) -> Segmenter:
    """The segmenter of a finished segmentation run (refused in one line for another task kind)."""
    from imbal.api import load_run

    check_segmenter_run(run_dir)
    run = load_run(run_dir, trust_config=trust_config)
    return Segmenter(run.model, run_resize(run.config, run_dir), device)


def _manifest(run_dir: Path) -> dict:
    from imbal.io import read_json_object
    from imbal.runner.rundir import MANIFEST_FILE

    return read_json_object(run_dir / MANIFEST_FILE, expected="written when the run started")


def check_same_split(gate_dir: Path, seg_dir: Path) -> None:
    """Refuse a gate whose recorded ``val_ids`` / ``test_ids`` differ from the segmenter's."""
    g, s = _manifest(gate_dir), _manifest(seg_dir)
    for key in ("val_ids", "test_ids"):
        if key not in g or key not in s:
            who = gate_dir if key not in g else seg_dir
            raise ImbalError(f"gate run {gate_dir} was trained on a different split: {who}/data_manifest.json "
                             f"records no '{key}' (expected data=airbus runs, the gate with data.target=presence)")
        if list(g[key]) != list(s[key]):
            a, b = list(g[key]), list(s[key])
            differ = len(set(a) ^ set(b))
            what = (f"{differ} image id(s) differ" if differ else "the same ids in another order")
            raise ImbalError(f"gate run {gate_dir} was trained on a different split: data_manifest.json '{key}' "
                             f"has {len(a)} ids, the segmenter run {seg_dir} {len(b)} ({what}); train both with the "
                             f"same data.root, data.seed and split settings")


def load_gate(gate_dir: str | Path, seg_dir: str | Path, *, threshold: float | None = None,
              trust_config: bool = False, device: str | None = None, use_tuning: bool = True) -> Gate:
    """The gate of a finished binary (ship-presence) run, checked against the segmenter's split.

    Its threshold: ``threshold`` if given; else the one ``imbal tune-seg`` recorded for this
    gate in the segmenter's ``seg_tuning.json``; else the one maximising image-level F2 on the
    gate run's own validation predictions (:func:`f2_threshold`; 0.5 when they hold no ship image).
    """
    from imbal.api import load_run
    from imbal.runner.rundir import read_stats

    gate_dir, seg_dir = Path(gate_dir), Path(seg_dir)
    task = read_stats(gate_dir).task
    if task != BINARY:
        raise ImbalError(f"--gate {gate_dir}: a {task} run (data_stats.json task '{task}'); the gate is a "
                         f"ship-presence classifier, a {BINARY} run (data=airbus data.target=presence)")
    manifest = _manifest(gate_dir)
    if manifest.get("target", "presence") != "presence":
        raise ImbalError(f"--gate {gate_dir}: data_manifest.json target {manifest['target']!r}; expected a "
                         "ship-presence run (data=airbus data.target=presence)")
    check_same_split(gate_dir, seg_dir)
    size = manifest.get("presence_size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ImbalError(f"--gate {gate_dir}: data_manifest.json presence_size={size!r}; expected a positive "
                         "integer or null")
    run = load_run(gate_dir, trust_config=trust_config)
    if threshold is not None:
        thr, source = check_probability(threshold, "--gate-threshold"), "--gate-threshold"
    else:
        tuned = read_tuning(seg_dir) if use_tuning else None
        rec = (tuned or {}).get("gate") or {}
        if rec.get("run_dir") and Path(rec["run_dir"]).resolve() == gate_dir.resolve() and "threshold" in rec:
            thr = check_probability(rec["threshold"], f"{seg_dir / TUNING_FILE} gate.threshold")
            source = f"{TUNING_FILE} (val F2 {tuned.get('val_f2', float('nan')):.4f})"
        else:
            pred = run.predictions("val")
            logits = np.asarray(pred["logits"], dtype=np.float64).reshape(-1)
            targets = np.asarray(pred["targets"]).reshape(-1)
            if not (targets > 0.5).any():
                thr, source = DEFAULT_THRESHOLD, "0.5: the gate run's validation has no ship image to choose by F2"
            else:
                thr, f2 = f2_threshold(1 / (1 + np.exp(-logits)), targets)
                source = f"max image-level F2 {f2:.4f} on the gate run's validation predictions"
    return Gate(run.model, thr, presence_transform(size), device, str(gate_dir), source)


@dataclass
class Settings:
    """threshold, min size, and where each came from (``given``, ``seg_tuning.json`` or ``default``)."""

    threshold: float = DEFAULT_THRESHOLD
    min_size: int = DEFAULT_MIN_SIZE
    sources: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        return (f"threshold={self.threshold:g} ({self.sources.get('threshold', 'default')}), "
                f"min_size={self.min_size} ({self.sources.get('min_size', 'default')})")


def resolve_settings(run_dir: str | Path, threshold: float | None = None, min_size: int | None = None, *,
                     use_tuning: bool = True) -> Settings:
    """Explicit values, else ``seg_tuning.json``'s, else 0.5 and 0."""
    tuned = (read_tuning(run_dir) if use_tuning else None) or {}
    s = Settings()
    where = str(Path(run_dir) / TUNING_FILE)
    if threshold is not None:
        s.threshold, s.sources["threshold"] = check_probability(threshold, "--threshold"), "given"
    elif "threshold" in tuned:
        s.threshold, s.sources["threshold"] = check_probability(tuned["threshold"], f"{where} threshold"), TUNING_FILE
    if min_size is not None:
        s.min_size, s.sources["min_size"] = check_min_size(min_size), "given"
    elif "min_size" in tuned:
        s.min_size, s.sources["min_size"] = check_min_size(tuned["min_size"], f"{where} min_size"), TUNING_FILE
    return s


def image_instances(prob: np.ndarray, settings: Settings, *, watershed: bool = False,
                    gate_ok: bool = True) -> tuple[np.ndarray, int]:
    """The instance labels of one image; none at all when the gate rejected it."""
    if not gate_ok:
        return np.zeros(prob.shape, dtype=np.int32), 0
    return instances(prob, threshold=settings.threshold, min_size=settings.min_size, watershed=watershed)


def describe_gate(gate: Gate | None) -> dict[str, Any] | None:
    return None if gate is None else {"run_dir": gate.run_dir, "threshold": gate.threshold, "source": gate.source}
