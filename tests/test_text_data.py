"""data=text: every file format, pairs, multilabel, bad rows, group splits, tokenizer cache, padding."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from imbal.data.text import BucketBatchSampler, TextDataModule
from imbal.errors import ImbalError

WORDS = {"ham": ["hello", "lunch", "meeting", "tomorrow", "call"], "spam": ["win", "prize", "free", "claim"]}


def corpus(n_ham=60, n_spam=20, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for lab, n in (("ham", n_ham), ("spam", n_spam)):
        for i in range(n):
            words = rng.choice(WORDS[lab], size=int(rng.integers(2, 9)))
            rows.append({"text": " ".join(words) + f" n{i}", "label": lab})
    return pd.DataFrame(rows)


def make(tmp_path, **kw):
    kw.setdefault("tokenizer", {"cache_dir": str(tmp_path / "tok")})
    kw.setdefault("batch_size", 8)
    dm = TextDataModule(**kw)
    dm.setup("fit")
    return dm


def write(df: pd.DataFrame, path, fmt):
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "tsv":
        df.to_csv(path, sep="\t", index=False)
    elif fmt == "jsonl":
        df.to_json(path, orient="records", lines=True)
    else:
        df.to_parquet(path)
    return path


@pytest.mark.parametrize("fmt,ext", [("csv", "csv"), ("tsv", "tsv"), ("jsonl", "jsonl"), ("parquet", "parquet")])
def test_every_format_gives_the_same_data(tmp_path, fmt, ext):
    df = corpus()
    path = write(df, tmp_path / f"d.{ext}", fmt)
    dm = make(tmp_path, train_path=str(path), seed=3)
    s = dm.stats
    assert s.class_names == ["ham", "spam"] and s.task == "multiclass" and s.modality == "text"
    sizes = dm.manifest["sizes"]
    assert sum(sizes.values()) == 80
    # stratified: 20 % test, 10 % val of each class (60 ham, 20 spam)
    assert dm.manifest["class_counts"]["test"] == [12, 4]
    assert dm.manifest["class_counts"]["val"] == [6, 2]
    assert s.class_counts == [42, 14]
    # the same rows whatever the format: compare the decoded training texts with the csv reading
    ref = make(tmp_path, train_path=str(write(df, tmp_path / "ref.csv", "csv")), seed=3)
    assert [a.tolist() for a in dm.splits["train"].a] == [a.tolist() for a in ref.splits["train"].a]


def test_format_by_config_and_unknown_extension(tmp_path):
    path = tmp_path / "data.txt"
    corpus().to_csv(path, sep="|", index=False)
    with pytest.raises(ImbalError, match=r"data.txt: cannot tell the format .*'\.txt'.*data.format"):
        make(tmp_path, train_path=str(path))
    dm = make(tmp_path, train_path=str(path), format="csv", sep="|")
    assert dm.stats.num_classes == 2


def test_headerless_tsv_with_root_and_label_map_saved(tmp_path):
    df = corpus()
    df[["label", "text"]].to_csv(tmp_path / "SMS", sep="\t", header=False, index=False)
    dm = make(tmp_path, root=str(tmp_path), train_path="SMS", format="tsv", header=False, column_names=["label", "text"])
    assert dm.stats.class_names == ["ham", "spam"]
    run = tmp_path / "run"
    run.mkdir()
    dm.save_manifest(run)
    assert json.loads((run / "label_map.json").read_text()) == {"ham": 0, "spam": 1}
    man = json.loads((run / "data_manifest.json").read_text())
    assert man["sizes"]["train"] + man["sizes"]["val"] + man["sizes"]["test"] == 80
    # ids follow the map: every training target of a "spam" text is 1
    y = dm.splits["train"].y
    assert int(y.sum()) == dm.stats.class_counts[1]


def test_numeric_labels_sorted_numerically_and_explicit_classes(tmp_path):
    df = pd.DataFrame({"text": [f"w{i} x" for i in range(40)], "label": [2, 10, 1, 2] * 10})
    dm = make(tmp_path, train_path=str(write(df, tmp_path / "n.csv", "csv")))
    assert dm.stats.class_names == ["1", "2", "10"]
    dm = make(tmp_path, train_path=str(tmp_path / "n.csv"), classes=["10", "2", "1"])
    assert dm.stats.class_names == ["10", "2", "1"]
    assert sum(dm.manifest["class_counts"]["train"]) == dm.manifest["sizes"]["train"]


def test_given_val_and_test_files_and_binary_task(tmp_path):
    for name, seed in (("tr", 0), ("va", 1), ("te", 2)):
        write(corpus(30, 10, seed), tmp_path / f"{name}.csv", "csv")
    dm = make(tmp_path, root=str(tmp_path), train_path="tr.csv", val_path="va.csv", test_path="te.csv", task="binary")
    assert dm.manifest["sizes"] == {"train": 40, "val": 40, "test": 40}
    assert dm.stats.task == "binary" and dm.stats.num_outputs == 1 and dm.stats.class_counts == [30, 10]
    x, y = next(iter(dm.val_dataloader()))
    assert y.dtype == torch.float32 and set(y.tolist()) <= {0.0, 1.0}


def test_duplicates_stay_in_one_split(tmp_path):
    df = corpus(200, 50)
    dup = df.sample(60, random_state=0)
    dup = dup.assign(text=dup.text.str.upper() + "  ")  # same text up to case and spacing
    df = pd.concat([df, dup, dup]).reset_index(drop=True)
    dm = make(tmp_path, train_path=str(write(df, tmp_path / "d.csv", "csv")), seed=5)
    assert dm.manifest["texts_also_in_train"] == {"val": 0, "test": 0}
    dm2 = make(tmp_path, train_path=str(tmp_path / "d.csv"), seed=5, group_by="none")
    leaked = dm2.manifest["texts_also_in_train"]
    assert leaked["val"] + leaked["test"] > 0  # without grouping copies do leak: the check can fail
    # different seeds give different splits
    dm3 = make(tmp_path, train_path=str(tmp_path / "d.csv"), seed=6)
    assert [a.tolist() for a in dm3.splits["test"].a] != [a.tolist() for a in dm.splits["test"].a]


def test_pairs_batch_and_counts(tmp_path):
    rng = np.random.default_rng(0)
    rows = [
        {"question1": f"how do i learn {w} fast", "question2": f"best way to learn {w}", "is_duplicate": int(rng.random() < 0.37)}
        for w in [f"topic{i}" for i in range(100)]
    ]
    df = pd.DataFrame(rows)
    dm = make(tmp_path, train_path=str(write(df, tmp_path / "q.csv", "csv")), text_columns=["question1", "question2"], label_column="is_duplicate")
    assert dm.stats.text.pair is True and dm.stats.class_names == ["0", "1"]
    x, y = next(iter(dm.train_dataloader()))
    assert set(x) == {"input_ids", "attention_mask", "input_ids_b", "attention_mask_b"}
    assert x["input_ids"].shape[0] == x["input_ids_b"].shape[0] == len(y) == 8


def test_multilabel_refuses_a_class_sampler(tmp_path):
    texts = [f"doc {i} about things" for i in range(30)]
    write(pd.DataFrame({"text": texts, "tags": ["a|b" if i % 2 else "c" for i in range(30)]}), tmp_path / "m.csv", "csv")
    kw = dict(train_path=str(tmp_path / "m.csv"), label_column="tags", multilabel=True, label_sep="|")
    with pytest.raises(ImbalError) as e:
        make(tmp_path, sampler={"name": "class_balanced"}, **kw)
    assert str(e.value) == (
        "sampler 'class_balanced' needs one class per sample; data 'text' is multilabel: use sampler=none"
    )
    with pytest.raises(ImbalError, match=r"^sampler 'sqrt' needs one class per sample"):
        make(tmp_path, sampler={"name": "sqrt"}, **{**kw, "multilabel": False, "task": "multilabel"})
    dm = make(tmp_path, sampler={"name": "none"}, **kw)  # plain shuffling: every training doc once
    assert sum(len(y) for _, y in dm.train_dataloader()) == dm.manifest["sizes"]["train"]


def test_multilabel_list_and_delimited_string_agree(tmp_path):
    texts = [f"doc {i} about things" for i in range(30)]
    labs = [["a", "c"] if i % 3 == 0 else (["b"] if i % 3 == 1 else []) for i in range(30)]
    write(pd.DataFrame({"text": texts, "tags": labs}), tmp_path / "m.jsonl", "jsonl")
    write(pd.DataFrame({"text": texts, "tags": ["|".join(l) for l in labs]}), tmp_path / "m.csv", "csv")
    a = make(tmp_path, train_path=str(tmp_path / "m.jsonl"), label_column="tags", multilabel=True, seed=1)
    b = make(tmp_path, train_path=str(tmp_path / "m.csv"), label_column="tags", multilabel=True, label_sep="|", seed=1)
    assert a.stats.task == b.stats.task == "multilabel"
    assert a.stats.class_names == b.stats.class_names == ["a", "b", "c"]
    for split in ("train", "val", "test"):
        assert torch.equal(a.splits[split].y, b.splits[split].y)
    y_all = torch.cat([a.splits[s].y for s in ("train", "val", "test")])
    assert y_all.sum(0).tolist() == [10, 10, 10]  # a and c on 10 docs each, b on 10
    # positives per label are the training class counts
    assert a.stats.class_counts == a.splits["train"].y.sum(0).int().tolist()


# -- bad rows -------------------------------------------------------------------
def test_empty_text_names_file_and_row(tmp_path):
    df = corpus(20, 10)
    df.loc[6, "text"] = "   "
    path = write(df, tmp_path / "bad.csv", "csv")
    with pytest.raises(ImbalError) as e:
        make(tmp_path, train_path=str(path))
    msg = str(e.value)
    assert "bad.csv, row 7: empty text in column 'text'" in msg and "\n" not in msg
    dm = make(tmp_path, train_path=str(path), on_bad_row="skip")
    assert dm.manifest["bad_rows_skipped"] == 1
    assert sum(dm.manifest["sizes"].values()) == 29


def test_missing_column_and_missing_value(tmp_path):
    path = write(corpus(), tmp_path / "c.csv", "csv")
    with pytest.raises(ImbalError, match=r"c.csv: no column 'body' \(columns: text, label\)"):
        make(tmp_path, train_path=str(path), text_column="body")
    recs = [{"text": "a b c", "label": "x"}, {"label": "y"}, {"text": "d e", "label": "y"}]
    p2 = tmp_path / "j.jsonl"
    p2.write_text("\n".join(json.dumps(r) for r in recs))
    with pytest.raises(ImbalError, match=r"j.jsonl, row 2: missing value in text column 'text'"):
        make(tmp_path, train_path=str(p2))


def test_unknown_label_in_test_file(tmp_path):
    write(corpus(30, 10), tmp_path / "tr.csv", "csv")
    te = corpus(5, 5, seed=1)
    te.loc[3, "label"] = "phishing"
    write(te, tmp_path / "te.csv", "csv")
    with pytest.raises(ImbalError, match=r"te.csv, row 4: unknown label 'phishing'; expected one of: ham, spam"):
        make(tmp_path, root=str(tmp_path), train_path="tr.csv", test_path="te.csv")
    dm = make(tmp_path, root=str(tmp_path), train_path="tr.csv", test_path="te.csv", on_bad_row="skip")
    assert dm.manifest["sizes"]["test"] == 9 and dm.manifest["bad_rows_skipped"] == 1


def test_malformed_lines(tmp_path):
    p = tmp_path / "m.csv"
    body = "".join(f"hello there {i},ham\nwin a prize {i},spam,extra\nsee you {i},ham\nfree cash {i},spam\n" for i in range(5))
    p.write_text("text,label\n" + body)
    with pytest.raises(ImbalError, match=r"m.csv: malformed line .*Expected 2 fields in line 3, saw 3"):
        make(tmp_path, train_path=str(p))
    dm = make(tmp_path, train_path=str(p), on_bad_row="skip")
    assert dm.manifest["bad_rows_skipped"] == 5 and sum(dm.manifest["sizes"].values()) == 15
    j = tmp_path / "m.jsonl"
    j.write_text('{"text": "a b", "label": "x"}\n{"text": "c d", "label": \n')
    with pytest.raises(ImbalError, match=r"m.jsonl, line 2: not a JSON object"):
        make(tmp_path, train_path=str(j))


def test_jsonl_non_object_lines_are_bad_rows_and_skippable(tmp_path):
    j = tmp_path / "a.jsonl"
    good = [json.dumps({"text": f"word{i} {'win' if i % 2 else 'hi'}", "label": "s" if i % 2 else "h"}) for i in range(20)]
    j.write_text("\n".join([*good[:5], "[1, 2]", *good[5:], "null", ""]) + "\n")
    with pytest.raises(ImbalError, match=r"a.jsonl, line 6: not a JSON object \(a JSON array\)"):
        make(tmp_path, train_path=str(j))
    dm = make(tmp_path, train_path=str(j), on_bad_row="skip")
    assert dm.manifest["bad_rows_skipped"] == 2 and sum(dm.manifest["sizes"].values()) == 20


def test_multilabel_list_cells_are_labels_but_a_list_text_is_refused(tmp_path):
    df = pd.DataFrame({"text": [f"doc {i}" for i in range(20)], "tags": [["a", "b"] if i % 2 else ["b"] for i in range(20)]})
    dm = make(tmp_path, train_path=str(write(df, tmp_path / "m.parquet", "parquet")), label_column="tags",
              multilabel=True)
    assert dm.stats.class_names == ["a", "b"]
    with pytest.raises(ImbalError, match=r"m.parquet, row 1: column 'tags' holds a list value \(\['b'\]\); "
                                         r"expected a label \(a string or a number\)"):
        make(tmp_path, train_path=str(tmp_path / "m.parquet"), label_column="tags")


# -- tokenizer, padding, bucketing ------------------------------------------------
def test_tokenizer_cached_by_data_and_settings(tmp_path):
    path = write(corpus(), tmp_path / "d.csv", "csv")
    a = make(tmp_path, train_path=str(path))
    assert a.tokenizer.cached is False
    b = make(tmp_path, train_path=str(path))
    assert b.tokenizer.cached is True and b.tokenizer.file == a.tokenizer.file
    assert [x.tolist() for x in a.splits["test"].a] == [x.tolist() for x in b.splits["test"].a]
    c = make(tmp_path, train_path=str(path), tokenizer={"cache_dir": str(tmp_path / "tok"), "min_frequency": 3})
    assert c.tokenizer.file != a.tokenizer.file and c.tokenizer.cached is False
    # vocabulary from the training split only: specials + the words of the training texts
    train_words = {w for t in [a.tokenizer.backend.decode(x.tolist()) for x in a.splits["train"].a] for w in t.split()}
    assert a.tokenizer.vocab_size == len(train_words) + 2
    w = make(tmp_path, train_path=str(path), tokenizer={"cache_dir": str(tmp_path / "tok"), "kind": "wordpiece", "vocab_size": 60})
    assert w.tokenizer.kind == "wordpiece" and w.tokenizer.vocab_size <= 60


def test_dynamic_padding_and_mask(tmp_path):
    path = write(corpus(), tmp_path / "d.csv", "csv")
    dm = make(tmp_path, train_path=str(path), min_length=1)
    ds = dm.splits["train"]
    x, y = ds.collate([0, 1, 2])
    lens = [len(ds.a[i]) for i in (0, 1, 2)]
    assert x["input_ids"].shape == (3, max(lens))
    assert x["attention_mask"].sum(1).tolist() == lens
    assert (x["input_ids"][x["attention_mask"] == 0] == dm.stats.text.pad_id).all()
    dm5 = make(tmp_path, train_path=str(path), min_length=12)
    assert dm5.splits["train"].collate([0])[0]["input_ids"].shape[1] >= 12


def test_bucket_batches_group_lengths_and_cover_epoch():
    lengths = np.random.default_rng(0).integers(1, 100, size=1000)
    bs = BucketBatchSampler(None, lengths, 10, pool=20, seed=0)
    batches = list(bs)
    assert len(batches) == len(bs) == 100
    assert sorted(i for b in batches for i in b) == list(range(1000))
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    rand_spread = np.mean([np.ptp(lengths[np.random.default_rng(k).choice(1000, 10, replace=False)]) for k in range(100)])
    assert spread < rand_spread / 4
    assert [b for b in bs] != batches  # a new order every epoch


def test_bucketing_loader(tmp_path):
    path = write(corpus(), tmp_path / "d.csv", "csv")
    dm = make(tmp_path, train_path=str(path), bucket=True, bucket_pool=4)
    n = sum(len(y) for _, y in dm.train_dataloader())
    assert n == dm.manifest["sizes"]["train"]


# -- Hugging Face datasets folders (save_to_disk) -------------------------------------------------
HF_NAMES = ["neg", "pos", "neutral"]  # ClassLabel order, not sorted: the ids must stay the dataset's


def hf_dataset(counts=(40, 20, 10), tag="t", names=HF_NAMES):
    datasets = pytest.importorskip("datasets")
    from datasets import ClassLabel, Features, Value

    datasets.disable_progress_bars()
    texts, labels = [], []
    for lab, n in enumerate(counts):
        for i in range(n):
            texts.append(f"{names[lab]} words {tag} {i}")
            labels.append(lab)
    feats = Features({"text": Value("string"), "label": ClassLabel(names=list(names)), "idx": Value("int64")})
    return datasets.Dataset.from_dict({"text": texts, "label": labels, "idx": list(range(len(texts)))}, features=feats)


def test_hf_dataset_folder_keeps_classlabel_names_and_ids(tmp_path):
    ds = hf_dataset()
    ds.save_to_disk(str(tmp_path / "ds"))
    dm = make(tmp_path, train_path=str(tmp_path / "ds"), seed=3)
    s = dm.stats
    assert s.class_names == ["neg", "pos", "neutral"]  # ClassLabel order, not sorted
    assert dm.manifest["label_map"] == {"neg": 0, "pos": 1, "neutral": 2}
    assert sum(dm.manifest["sizes"].values()) == 70
    assert dm.manifest["class_counts"]["test"] == [8, 4, 2]  # 20 % of 40, 20, 10
    assert dm.manifest["class_counts"]["val"] == [4, 2, 1]
    assert s.class_counts == [28, 14, 7] and s.val_from == "train"
    # the same data as a CSV of the names, read with the same class order, gives the same training split
    df = ds.to_pandas()
    df["label"] = [HF_NAMES[i] for i in df["label"]]
    ref = make(tmp_path, train_path=str(write(df[["text", "label"]], tmp_path / "ref.csv", "csv")), seed=3,
               classes=HF_NAMES)
    assert [a.tolist() for a in dm.splits["train"].a] == [a.tolist() for a in ref.splits["train"].a]
    assert dm.splits["train"].y.tolist() == ref.splits["train"].y.tolist()
    # forced format, and data.root as the folder itself
    assert make(tmp_path, train_path=str(tmp_path / "ds"), format="hf_disk").stats.num_classes == 3
    assert make(tmp_path, root=str(tmp_path / "ds"), train_path=".").stats.class_counts == [28, 14, 7]
    # data.classes still wins over the ClassLabel order
    assert make(tmp_path, train_path=str(tmp_path / "ds"), classes=["pos", "neg", "neutral"]).stats.class_counts == [14, 28, 7]


def test_hf_dataset_dict_uses_its_own_validation_and_test_splits(tmp_path):
    from datasets import DatasetDict

    dd = DatasetDict(train=hf_dataset(), validation=hf_dataset((5, 3, 1), tag="v"), test=hf_dataset((6, 6, 6), tag="s"))
    dd.save_to_disk(str(tmp_path / "dd"))
    dm = make(tmp_path, train_path=str(tmp_path / "dd"))
    m = dm.manifest
    assert m["sizes"] == {"train": 70, "val": 9, "test": 18}
    assert m["class_counts"]["val"] == [5, 3, 1] and m["class_counts"]["test"] == [6, 6, 6]
    assert dm.stats.class_counts == [40, 20, 10] and dm.stats.val_from == "dataset_split"
    assert m["sources"]["val"].endswith("dd/validation") and m["sources"]["test"].endswith("dd/test")
    # a split named "val", no test split: test is cut from train (20 %); an explicit test_path wins over a split
    DatasetDict(train=hf_dataset(), val=hf_dataset((5, 3, 1), tag="v")).save_to_disk(str(tmp_path / "dd2"))
    dm2 = make(tmp_path, train_path=str(tmp_path / "dd2"))
    assert dm2.manifest["class_counts"]["val"] == [5, 3, 1] and dm2.manifest["class_counts"]["test"] == [8, 4, 2]
    csv = hf_dataset((2, 2, 2), tag="c").to_pandas()
    csv["label"] = [HF_NAMES[i] for i in csv["label"]]
    dm3 = make(tmp_path, train_path=str(tmp_path / "dd"), test_path=str(write(csv, tmp_path / "t.csv", "csv")))
    assert dm3.manifest["class_counts"]["test"] == [2, 2, 2] and dm3.manifest["class_counts"]["val"] == [5, 3, 1]


def test_hf_unlabelled_test_split_is_left_out(tmp_path, capsys):
    from datasets import DatasetDict

    test = hf_dataset((4, 4, 4), tag="s").map(lambda r: {"label": -1})  # GLUE's test splits carry no labels
    DatasetDict(train=hf_dataset(), test=test).save_to_disk(str(tmp_path / "glue"))
    dm = make(tmp_path, train_path=str(tmp_path / "glue"))
    assert "glue/test has no labels (all -1); split 'test' is not read from it" in capsys.readouterr().out
    assert dm.manifest["class_counts"]["test"] == [8, 4, 2]  # cut from train instead


def test_hf_multilabel_classlabel_list(tmp_path):
    datasets = pytest.importorskip("datasets")
    from datasets import ClassLabel, Features, Sequence, Value

    rows = [[0], [1, 2], [2], [0, 2]] * 10
    feats = Features({"text": Value("string"), "tags": Sequence(ClassLabel(names=["x", "y", "z"]))})
    ds = datasets.Dataset.from_dict({"text": [f"text {i}" for i in range(40)], "tags": rows}, features=feats)
    ds.save_to_disk(str(tmp_path / "ml"))
    dm = make(tmp_path, train_path=str(tmp_path / "ml"), label_column="tags", multilabel=True)
    assert dm.stats.class_names == ["x", "y", "z"] and dm.stats.task == "multilabel"
    total = [sum(dm.manifest["class_counts"][s][c] for s in ("train", "val", "test")) for c in range(3)]
    assert total == [20, 10, 30]


def test_hf_folder_errors_are_one_line(tmp_path, monkeypatch):
    from datasets import DatasetDict

    DatasetDict(train_raw=hf_dataset(), test=hf_dataset(tag="s")).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(ImbalError, match=r"data.train_path=.*dd: no 'train' split in this DatasetDict \(splits: train_raw, test\)"):
        make(tmp_path, train_path=str(tmp_path / "dd"))
    hf_dataset().save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(ImbalError, match=r"ds: no column 'body' \(columns: text, label, idx\); set data.text_column"):
        make(tmp_path, train_path=str(tmp_path / "ds"), text_column="body")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ImbalError, match=r"plain is a directory but not a Hugging Face datasets folder"):
        make(tmp_path, train_path=str(tmp_path / "plain"))
    path = write(corpus(), tmp_path / "d.csv", "csv")
    with pytest.raises(ImbalError, match=r"data.train_path=.*d.csv is not a Hugging Face datasets folder"):
        make(tmp_path, train_path=str(path), format="hf_disk")
    monkeypatch.setitem(__import__("sys").modules, "datasets", None)  # the package not installed
    with pytest.raises(ImbalError) as err:
        make(tmp_path, train_path=str(tmp_path / "ds"))
    assert str(err.value) == (f"data.train_path={tmp_path / 'ds'} is a Hugging Face datasets folder; "
                              "reading it needs the datasets package: pip install datasets")
