"""Reading the lists of ``data=multilabel_images`` (:mod:`imbal.data.multilabel_images`): CSV / JSONL tables,
COCO instances files, image-id files, class-name files, and Pascal VOC's XML annotations turned into a JSONL list.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from imbal.errors import ImbalError

TABLE_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
COCO_SUFFIX = ".json"


# -- reading the lists ---------------------------------------------------------
def list_format(path: Path, key: str) -> str:
    """``csv``, ``jsonl`` or ``coco`` from the suffix; refuses anything else in one line."""
    suffix = path.suffix.lower()
    if suffix == COCO_SUFFIX:
        return "coco"
    if suffix in TABLE_SUFFIXES:
        return TABLE_SUFFIXES[suffix]
    raise ImbalError(f"{key}={path}: cannot tell the list format from the suffix '{suffix or '(none)'}'; expected "
                     f".csv or .jsonl (columns path, labels) or a COCO instances .json")


def parse_label_cell(value: Any, *, where: str, row: int, label_sep: str) -> list[str]:
    """The class names of one ``labels`` cell: a list, a JSON list written as text, or a delimited string."""
    from imbal.data.text.readers import is_missing, parse_labels

    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ImbalError(f"{where}, row {row}: labels {value[:40]!r} is not a JSON list ({exc}); expected a "
                             f"JSON list of class names or names separated by {label_sep!r}") from None
    if isinstance(value, (list, tuple, np.ndarray)) and any(isinstance(v, (list, dict)) for v in value):
        raise ImbalError(f"{where}, row {row}: labels {str(value)[:40]} holds a nested list or object; "
                         "expected a list of class names")
    if is_missing(value):
        return []
    return parse_labels(value, multilabel=True, label_sep=label_sep) or []


def read_table_list(path: Path, fmt: str, *, label_sep: str) -> tuple[list[str], list[list[str]]]:
    """(paths, label names per row) of a CSV or JSONL list; rows are numbered from 1 after the header."""
    from imbal.data.text.readers import is_missing, read_table

    df, _ = read_table(path, fmt=fmt)
    for column in ("path", "labels"):
        if column not in df.columns:
            raise ImbalError(f"{path}: no column '{column}' (columns: {', '.join(map(str, df.columns))}); "
                             "expected columns path and labels")
    paths, labels = [], []
    for i, (p, lab) in enumerate(zip(df["path"].tolist(), df["labels"].tolist()), 1):
        if is_missing(p) or not isinstance(p, str) or not p.strip():
            raise ImbalError(f"{path}, row {i}: no path (got {p!r}); expected an image path relative to the image folder")
        paths.append(p.strip())
        labels.append(parse_label_cell(lab, where=str(path), row=i, label_sep=label_sep))
    return paths, labels


def read_ids(path: Path) -> list[str]:
    """Image ids, one per line (blank lines skipped); a real pickle is refused."""
    if not path.is_file():
        raise ImbalError(f"data.train_ids={path} does not exist; expected a text file of image ids, one per line")
    raw = path.read_bytes()
    if raw[:1] == b"\x80":
        raise ImbalError(f"data.train_ids={path} is a Python pickle; expected a text file of image ids, one per line "
                         "(imbal does not unpickle data files)")
    try:
        return [line.strip() for line in raw.decode("utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise ImbalError(f"data.train_ids={path} is not UTF-8 text; expected image ids, one per line") from None


def _json_file(path: Path) -> dict:
    if not path.is_file():
        raise ImbalError(f"COCO annotation file '{path}' does not exist")
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise ImbalError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno}); expected a "
                         "COCO instances file") from None
    except UnicodeDecodeError:
        raise ImbalError(f"{path}: not UTF-8 text; expected a COCO instances json") from None
    if not isinstance(data, dict) or any(not isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        found = ", ".join(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise ImbalError(f"{path}: not a COCO instances file (expected lists 'images', 'annotations' and "
                         f"'categories'; found {found})")
    return data


def _counts_as_label(ann: dict) -> bool:
    """Wu et al.'s ``_parse_ann_info``: skip ``ignore`` and degenerate boxes."""
    if ann.get("ignore", False):
        return False
    if "area" in ann and not float(ann["area"]) > 0:
        return False
    box = ann.get("bbox")
    if isinstance(box, (list, tuple)) and len(box) == 4 and (float(box[2]) < 1 or float(box[3]) < 1):
        return False
    return True


def read_coco(path: Path, ids: list[str] | None = None) -> tuple[list[str], list[list[str]], list[str]]:
    """(file names, category names per image, category names by id) of a COCO instances file.

    ``ids`` keeps those images, in that order (a COCO-MLT id list); an id not in the file is refused.
    """
    data = _json_file(path)
    cats: dict[Any, str] = {}
    for k, c in enumerate(data["categories"]):
        if not isinstance(c, dict) or "id" not in c or "name" not in c:
            raise ImbalError(f"{path}: categories[{k}] has no 'id' and 'name'; expected COCO categories")
        cats[c["id"]] = str(c["name"])
    names = [cats[i] for i in sorted(cats)]
    images: dict[str, dict] = {}
    for k, im in enumerate(data["images"]):
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise ImbalError(f"{path}: images[{k}] has no 'id' and 'file_name'; expected COCO images")
        images[str(im["id"])] = im
    labels: dict[str, set[str]] = {key: set() for key in images}
    for k, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or "category_id" not in ann:
            raise ImbalError(f"{path}: annotations[{k}] has no 'image_id' and 'category_id'")
        key = str(ann["image_id"])
        if key not in images:
            raise ImbalError(f"{path}: annotations[{k}] names image_id {ann['image_id']}, which is not in 'images'")
        if ann["category_id"] not in cats:
            raise ImbalError(f"{path}: annotations[{k}] names category_id {ann['category_id']}, which is not in "
                             "'categories'")
        if _counts_as_label(ann):
            labels[key].add(cats[ann["category_id"]])
    keys = list(images)
    if ids is not None:
        unknown = [(n, i) for n, i in enumerate(ids, 1) if i not in images]
        if unknown:
            raise ImbalError(f"data.train_ids: line {unknown[0][0]}: image id {unknown[0][1]!r} is not in {path} "
                             f"({len(unknown)} such ids)")
        keys = ids
    return [str(images[k]["file_name"]) for k in keys], [sorted(labels[k]) for k in keys], names


def read_class_names(path: Path) -> list[str]:
    if not path.is_file():
        raise ImbalError(f"data.class_names={path} does not exist; expected a text file, one class name per line")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    seen: set[str] = set()
    for n, name in enumerate(names, 1):
        if name in seen:
            raise ImbalError(f"data.class_names={path}: class {name!r} is listed twice (again on line {n})")
        seen.add(name)
    if len(names) < 2:
        raise ImbalError(f"data.class_names={path}: {len(names)} class names; expected at least 2")
    return names


# -- Pascal VOC: XML annotations to a JSONL list ---------------------------------------
def voc_list(voc_dir: str | Path, ids_file: str | Path, out: str | Path) -> int:
    """Write a JSONL list (``path`` ``JPEGImages/<id>.jpg``, ``labels`` the object names of
    ``Annotations/<id>.xml``, ``difficult`` objects included as Wu et al.'s ``xml_style.py``) of the
    image ids in ``ids_file`` (one per line: VOC-MLT's ``appendix/VOCdevkit/longtail2012/img_id.txt``,
    or ``VOC2007/ImageSets/Main/test.txt``); returns the number of rows::

        python -m imbal.data.multilabel_images VOCdevkit/VOC2012 img_id.txt voc_mlt_train.jsonl
    """
    import xml.etree.ElementTree as ET

    voc_dir, ids_file = Path(voc_dir), Path(ids_file)
    if not ids_file.is_file():
        raise ImbalError(f"{ids_file} does not exist; expected image ids, one per line")
    ids = [line.strip() for line in ids_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = []
    for n, image_id in enumerate(ids, 1):
        xml = voc_dir / "Annotations" / f"{image_id}.xml"
        if not xml.is_file():
            raise ImbalError(f"{ids_file}, line {n}: no annotation {xml}; expected a VOC folder with Annotations/")
        try:
            names = sorted({(o.findtext("name") or "").strip() for o in ET.parse(xml).getroot().iter("object")} - {""})
        except ET.ParseError as exc:
            raise ImbalError(f"{xml}: not valid XML ({exc})") from None
        rows.append(json.dumps({"path": f"JPEGImages/{image_id}.jpg", "labels": names}))
    Path(out).write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    return len(rows)
